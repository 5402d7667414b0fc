// Package grcheckpoint saves and resumes GoMLX checkpoints so that a crash, a kill -9 or a full disk during
// a save never costs more than that save: a save is all-or-nothing, and a resume that meets a broken
// newest checkpoint says so and falls back to the newest intact one.
//
// GoMLX's checkpoints.Handler (package github.com/gomlx/gomlx/pkg/ml/context/checkpoints) writes a
// checkpoint in place: the .bin and the .json are created under their final names and filled afterwards,
// without fsync. A process killed during a save, or a disk that fills up, leaves a newest checkpoint that
// is empty or truncated, and every later checkpoints.Build(ctx).Dir(dir).Done() fails on it ("read zip:
// unexpected EOF", "failed to decode contents of checkpoint"): it never tries the earlier, intact one.
// This cannot be fixed by options of the handler, so this package wraps it:
//
//   - Save lets GoMLX's handler write the pair into a staging folder inside dir (.grcheckpoint-staging),
//     fsyncs both files, reads them back and decodes them (a write error GoMLX did not report is caught
//     here), then renames them into dir — the .bin first, the .json last: GoMLX lists checkpoints by their
//     .json, so a checkpoint appears only once it is complete — and fsyncs dir. Only then are checkpoints
//     beyond Keep removed. A failed save returns an error and leaves the previous checkpoints as they were.
//   - Done (opening the folder) decodes the checkpoints from the newest down and resumes from the first that
//     decodes; the newer, broken ones are reported by Skipped (and left on disk: the next save is newer
//     than them, and pruning removes them later). When every checkpoint is broken, Done returns an error
//     that names the files to delete.
//
// The folder stays a plain GoMLX checkpoint folder (same file names, same formats): GoMLX's own handler can
// read it. Each checkpoint can carry a small JSON record of the program's own (SetMeta, Meta): the runner
// of gradreg's examples stores the run's method, seed, hyperparameters and curve there, so that a resume
// can check that it continues the same run. Context hyperparameters (Params) are neither saved nor
// restored (GoMLX's ExcludeAllParams): the program's flags stay their source of truth.
//
// The .bin is written uncompressed (GoMLX's BinUncompressed; GoMLX reads both formats): GoMLX's gzip writer
// leaves its file open, which on a full disk keeps a failed save's space allocated after its removal, and
// float weights hardly compress. A truncated .bin is detected either way (the variables' lengths are in the
// .json); a gzip .bin (an older GoMLX checkpoint) is also checked against its CRC-32.
//
// Cost: a save writes the checkpoint once and reads it back once;
// opening a folder decodes the checkpoints it has to try. Usage:
//
//	ckpt, err := grcheckpoint.Build(ctx).Dir(dir).Keep(2).Done() // before the first graph is built
//	if err != nil { ... }
//	for _, s := range ckpt.Skipped() { log.Print(s) } // broken newer checkpoints, if any
//	loop.OnStep(...) or train.EveryNSteps(loop, n, "checkpoint", 100, ckpt.OnStepFn)
//
// A Handler holds the folder locked (LockFile, an flock on unix) from Done until Close or the end of its
// process: a second Handler of the folder, in another process or in the same one, is refused with an error
// that names the holder's PID. The operating system releases the lock of a killed process, so a lock
// file left behind does not block. (On platforms without flock there is no lock.)
//
// Variables of GoMLX's metrics (scope metrics.Scope: moving averages and means whose scope carries a
// random UUID per metric object) are neither saved nor resumed: a resumed process cannot use them, and
// saving them would add a set with each resume.
package grcheckpoint

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/pkg/errors"
)

const (
	// StagingDir is the folder inside the checkpoint folder where a save is written before it is renamed
	// into place. Its content is always disposable: Done empties it.
	StagingDir = ".grcheckpoint-staging"

	// MetaSuffix is the suffix of the optional record a checkpoint carries (SetMeta), next to GoMLX's
	// checkpoints.JsonNameSuffix and checkpoints.BinDataSuffix files.
	MetaSuffix = ".meta"

	// DefaultKeep is the number of checkpoints kept when Keep is not called.
	DefaultKeep = 2
)

// Config configures a Handler: Build(ctx).Dir(dir).Keep(n).Done().
type Config struct {
	ctx  *context.Context
	dir  string
	keep int
}

// Build starts the configuration of a Handler for ctx.
func Build(ctx *context.Context) *Config { return &Config{ctx: ctx, keep: DefaultKeep} }

// Dir sets the checkpoint folder (created if missing).
func (c *Config) Dir(dir string) *Config {
	c.dir = dir
	return c
}

// Keep sets how many checkpoints are kept (default DefaultKeep = 2; at least 1): after a save, older ones
// are removed.
func (c *Config) Keep(n int) *Config {
	c.keep = n
	return c
}

// Handler saves checkpoints of a context all-or-nothing; created by Config.Done, which also loads the newest
// intact checkpoint of the folder into the context.
type Handler struct {
	ctx      *context.Context
	dir      string
	keep     int
	staging  string
	gomlx    *checkpoints.Handler
	loaded   string // base name of the checkpoint resumed from ("" for none)
	loadMeta []byte
	skipped  []*BrokenError
	meta     any
	lock     *os.File // the folder's lock (LockFile), held until Close
}

// BrokenError describes a checkpoint that cannot be read.
type BrokenError struct {
	Dir, Name string // folder and base name (without suffix)
	Err       error  // why it cannot be read
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("checkpoint %s in %q is broken (%v)", e.Name, e.Dir, e.Err)
}

// Files returns the paths of the broken checkpoint's files that exist.
func (e *BrokenError) Files() []string {
	var files []string
	for _, suffix := range []string{checkpoints.JsonNameSuffix, checkpoints.BinDataSuffix, MetaSuffix} {
		p := filepath.Join(e.Dir, e.Name+suffix)
		if _, err := os.Lstat(p); err == nil {
			files = append(files, p)
		}
	}
	return files
}

// Done creates the folder if needed, checks that files can be written there, empties the staging folder,
// and loads the newest checkpoint that decodes (if any) into the context, as GoMLX's handler does: the
// variables take the saved values when they are created (and at once for those that exist). Newer broken
// checkpoints are reported by Skipped. It returns an error when the folder cannot be written, or when it
// holds checkpoints and none of them decodes (the error names the files to delete).
func (c *Config) Done() (*Handler, error) {
	if c.dir == "" {
		return nil, errors.New("grcheckpoint: no folder given (Dir)")
	}
	if c.keep < 1 {
		return nil, errors.Errorf("grcheckpoint: Keep(%d): keep at least 1 checkpoint", c.keep)
	}
	h := &Handler{ctx: c.ctx, dir: c.dir, keep: c.keep, staging: filepath.Join(c.dir, StagingDir)}
	if err := ProbeDir(c.dir); err != nil {
		return nil, errors.WithMessage(err, "checkpoint folder")
	}
	lk, err := lock(c.dir)
	if err != nil {
		return nil, err
	}
	h.lock = lk
	if _, err = h.open(); err != nil {
		_ = lk.Close()
		return nil, err
	}
	return h, nil
}

// open is Done once the folder is locked.
func (h *Handler) open() (*Handler, error) {
	c := &Config{ctx: h.ctx, dir: h.dir, keep: h.keep}
	if err := h.resetStaging(); err != nil {
		return nil, err
	}
	names, err := list(c.dir)
	if err != nil {
		return nil, err
	}
	for i := len(names) - 1; i >= 0; i-- {
		meta, err := verify(c.dir, names[i])
		if err != nil {
			h.skipped = append(h.skipped, &BrokenError{Dir: c.dir, Name: names[i], Err: err})
			continue
		}
		h.loaded, h.loadMeta = names[i], meta
		break
	}
	if len(names) > 0 && h.loaded == "" {
		var msgs, files []string
		for _, b := range h.skipped {
			msgs = append(msgs, fmt.Sprintf("%s: %v", b.Name, b.Err))
			files = append(files, b.Files()...)
		}
		return nil, errors.Errorf("no intact checkpoint in %q: %s; delete these files to start from scratch "+
			"(or give another folder): %s", c.dir, strings.Join(msgs, "; "), strings.Join(files, " "))
	}
	if h.loaded != "" { // GoMLX's handler loads the newest checkpoint of its folder: give it this one only.
		for _, suffix := range []string{checkpoints.JsonNameSuffix, checkpoints.BinDataSuffix} {
			if err := linkOrCopy(filepath.Join(c.dir, h.loaded+suffix), filepath.Join(h.staging, h.loaded+suffix)); err != nil {
				return nil, errors.WithMessagef(err, "grcheckpoint: staging checkpoint %s", h.loaded)
			}
		}
	}
	h.gomlx, err = checkpoints.Build(c.ctx).Dir(h.staging).Keep(-1).ExcludeAllParams().
		WithCompression(checkpoints.BinUncompressed).Done()
	if err != nil {
		return nil, errors.WithMessagef(err, "grcheckpoint: loading checkpoint %s of %q", h.loaded, c.dir)
	}
	for name := range h.gomlx.LoadedVariables() { // Metrics' accumulators of an earlier process: not resumed.
		if isMetricVariable(name) {
			delete(h.gomlx.LoadedVariables(), name)
		}
	}
	if err := h.resetStaging(); err != nil {
		return nil, err
	}
	return h, nil
}

// Loaded returns the base name of the checkpoint resumed from ("" when the folder had none).
func (h *Handler) Loaded() string { return h.loaded }

// Skipped returns the broken checkpoints, newer than the one loaded, that Done passed over.
func (h *Handler) Skipped() []*BrokenError { return h.skipped }

// Meta decodes the record saved with the loaded checkpoint into v; it returns false when there is none
// (no checkpoint loaded, or one saved without a record, e.g. by GoMLX's own handler).
func (h *Handler) Meta(v any) (bool, error) {
	if h.loadMeta == nil {
		return false, nil
	}
	if err := json.Unmarshal(h.loadMeta, v); err != nil {
		return false, errors.Wrapf(err, "grcheckpoint: record of checkpoint %s in %q", h.loaded, h.dir)
	}
	return true, nil
}

// SetMeta sets the record (any value encoding/json can write) saved with each following checkpoint.
func (h *Handler) SetMeta(v any) { h.meta = v }

// Dir returns the checkpoint folder.
func (h *Handler) Dir() string { return h.dir }

// OnStepFn saves a checkpoint; it has the signature of train.OnStepFn, to attach the handler to a train.Loop.
func (h *Handler) OnStepFn(_ *train.Loop, _ []*tensors.Tensor) error { return h.Save() }

// Save writes a new checkpoint of the context's variables (and of the loaded ones not yet used) with the
// record of SetMeta, all-or-nothing, then removes the checkpoints beyond Keep. On error the checkpoints
// already in the folder are untouched and the error says so.
func (h *Handler) Save() error {
	name, err := h.stage()
	if err != nil {
		_ = h.resetStaging()
		return errors.WithMessagef(err, "checkpoint not saved in %q (the checkpoints already there, if any, are intact)", h.dir)
	}
	if err := h.commit(name); err != nil {
		_ = h.resetStaging()
		return errors.WithMessagef(err, "checkpoint not saved in %q (the checkpoints already there, if any, are intact)", h.dir)
	}
	return h.prune()
}

// stage writes a checkpoint into the staging folder, synced and verified, and returns its base name.
func (h *Handler) stage() (string, error) {
	if err := h.resetStaging(); err != nil {
		return "", err
	}
	for v := range h.ctx.IterVariables() {
		if isMetricVariable(v.ParameterName()) {
			h.gomlx.ExcludeVarsFromSaving(v)
		}
	}
	if err := h.gomlx.Save(); err != nil {
		return "", err
	}
	names, err := list(h.staging)
	if err != nil {
		return "", err
	}
	if len(names) != 1 {
		return "", errors.Errorf("grcheckpoint: GoMLX's handler wrote %d checkpoints, expected 1", len(names))
	}
	name := names[0]
	if h.meta != nil {
		data, err := json.Marshal(h.meta)
		if err != nil {
			return "", errors.Wrap(err, "grcheckpoint: encoding the record (SetMeta)")
		}
		if err := writeSynced(filepath.Join(h.staging, name+MetaSuffix), data); err != nil {
			return "", err
		}
	}
	for _, suffix := range []string{checkpoints.BinDataSuffix, checkpoints.JsonNameSuffix} {
		if err := syncFile(filepath.Join(h.staging, name+suffix)); err != nil {
			return "", err
		}
	}
	if _, err := verify(h.staging, name); err != nil {
		return "", errors.WithMessage(err, "reading the new checkpoint back")
	}
	return name, nil
}

// commit renames a staged checkpoint into the folder under the next number: .bin, record, then .json.
func (h *Handler) commit(staged string) error {
	names, err := list(h.dir)
	if err != nil {
		return err
	}
	next := 0
	for _, n := range names {
		if k, ok := number(n); ok && k >= next {
			next = k + 1
		}
	}
	m := nameRegex.FindStringSubmatch(staged)
	if m == nil {
		return errors.Errorf("grcheckpoint: unexpected checkpoint name %q from GoMLX's handler", staged)
	}
	final := fmt.Sprintf("checkpoint-n%07d-%s", next, m[2])
	for _, suffix := range []string{checkpoints.BinDataSuffix, MetaSuffix, checkpoints.JsonNameSuffix} {
		src := filepath.Join(h.staging, staged+suffix)
		if _, err := os.Stat(src); suffix == MetaSuffix && os.IsNotExist(err) {
			continue
		}
		if err := rename(src, filepath.Join(h.dir, final+suffix)); err != nil {
			return errors.Wrap(err, "grcheckpoint")
		}
	}
	return syncFile(h.dir)
}

// rename is os.Rename; tests make it fail.
var rename = os.Rename

// prune removes the checkpoints beyond Keep, oldest first (each one's .json first, so that a checkpoint
// cut off by a crash during the removal is no longer listed), and files left over from an interrupted
// save or removal (a .bin or record without its .json).
func (h *Handler) prune() error {
	names, err := list(h.dir)
	if err != nil {
		return err
	}
	for _, name := range names[:max(len(names)-h.keep, 0)] {
		for _, suffix := range []string{checkpoints.JsonNameSuffix, checkpoints.BinDataSuffix, MetaSuffix} {
			if err := os.Remove(filepath.Join(h.dir, name+suffix)); err != nil && !os.IsNotExist(err) {
				return errors.Wrap(err, "grcheckpoint: removing an old checkpoint")
			}
		}
	}
	entries, err := os.ReadDir(h.dir)
	if err != nil {
		return errors.Wrap(err, "grcheckpoint")
	}
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), checkpoints.BinDataSuffix)
		if !ok {
			base, ok = strings.CutSuffix(e.Name(), MetaSuffix)
		}
		if !ok || !strings.HasPrefix(base, "checkpoint-") {
			continue
		}
		if _, err := os.Stat(filepath.Join(h.dir, base+checkpoints.JsonNameSuffix)); os.IsNotExist(err) {
			if err := os.Remove(filepath.Join(h.dir, e.Name())); err != nil {
				return errors.Wrap(err, "grcheckpoint: removing a left-over file")
			}
		}
	}
	return syncFile(h.dir)
}

func (h *Handler) resetStaging() error {
	if err := os.RemoveAll(h.staging); err != nil {
		return errors.Wrap(err, "grcheckpoint: emptying the staging folder")
	}
	if err := os.Mkdir(h.staging, 0o755); err != nil {
		return errors.Wrap(err, "grcheckpoint: creating the staging folder")
	}
	return nil
}

// isMetricVariable reports whether a variable (by its ParameterName, "var:/scope/name") is in the scope of
// GoMLX's metrics (metrics.Scope): moving averages and means whose scope names carry a random UUID per
// metric object, so a resumed process never uses a saved one; saving them would add a set per resume.
func isMetricVariable(parameterName string) bool {
	scope := strings.TrimPrefix(parameterName, "var:")
	return strings.HasPrefix(scope, context.ScopeSeparator+metrics.Scope+context.ScopeSeparator)
}

// nameRegex matches GoMLX's checkpoint base names: checkpoint-n<number>-<time>[-step-<step>|-initial].
var nameRegex = regexp.MustCompile(`^checkpoint-n(\d+)-(.+)$`)

func number(name string) (int, bool) {
	m := nameRegex.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	k, err := strconv.Atoi(m[1])
	return k, err == nil
}

// list returns the base names of the checkpoints of dir (those with a .json), oldest first (GoMLX's order).
func list(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, errors.Wrap(err, "grcheckpoint: listing checkpoints")
	}
	var names []string
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), checkpoints.JsonNameSuffix)
		if ok && !e.IsDir() && strings.HasPrefix(base, "checkpoint-") {
			names = append(names, base)
		}
	}
	sort.Strings(names)
	return names, nil
}

// verify decodes a checkpoint (into a scratch context) and its record, and returns the record (nil if none).
func verify(dir, name string) ([]byte, error) {
	js, err := os.ReadFile(filepath.Join(dir, name+checkpoints.JsonNameSuffix))
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(filepath.Join(dir, name+checkpoints.BinDataSuffix))
	if err != nil {
		return nil, err
	}
	if len(js) == 0 {
		return nil, errors.Errorf("%s%s is empty", name, checkpoints.JsonNameSuffix)
	}
	if len(bin) == 0 {
		return nil, errors.Errorf("%s%s is empty", name, checkpoints.BinDataSuffix)
	}
	raw, err := decompress(bin)
	if err != nil {
		return nil, errors.WithMessagef(err, "%s%s", name, checkpoints.BinDataSuffix)
	}
	if err := catch(func() error {
		_, err := checkpoints.Build(context.New()).FromEmbed(string(js), raw).ExcludeAllParams().Done()
		return err
	}); err != nil {
		return nil, err
	}
	meta, err := os.ReadFile(filepath.Join(dir, name+MetaSuffix))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(meta) {
		return nil, errors.Errorf("%s%s is not valid JSON (%d bytes)", name, MetaSuffix, len(meta))
	}
	return meta, nil
}

// decompress returns the variables' bytes of a checkpoint's .bin: GoMLX's header ("gomlx_checkpoints", a
// length byte, "gzip") and a gzip stream, decoded to its end (which checks its length and CRC-32), or
// an uncompressed .bin as it is. (GoMLX's FromEmbed ignores a decoding error of the .bin, so it is done here.)
func decompress(bin []byte) ([]byte, error) {
	const header = "gomlx_checkpoints"
	if !bytes.HasPrefix(bin, []byte(header)) {
		return bin, nil
	}
	rest := bin[len(header):]
	if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
		return nil, errors.New("truncated header")
	}
	if format := string(rest[1 : 1+int(rest[0])]); format != "gzip" {
		return nil, errors.Errorf("unknown compression %q", format)
	}
	zr, err := gzip.NewReader(bytes.NewReader(rest[1+int(rest[0]):]))
	if err != nil {
		return nil, errors.Wrap(err, "gzip header")
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, errors.Wrap(err, "gzip data")
	}
	return raw, nil
}

// catch returns fn's error, or the panic it raised as an error.
func catch(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.Errorf("%v", r)
		}
	}()
	return fn()
}

// ProbeDir creates dir (and its parents) if needed and checks that a file can be created, written, synced
// and removed there, so that a program can fail before its work rather than after it.
func ProbeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return errors.Wrapf(err, "cannot create folder %q", dir)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return errors.Wrapf(err, "cannot write in folder %q", dir)
	}
	name := f.Name()
	_, err = f.Write([]byte("probe\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return errors.Wrapf(err, "cannot write in folder %q", dir)
	}
	return nil
}

// WriteFile writes a file all-or-nothing: into a temporary file of the same folder, synced, then renamed
// over path (and the folder synced). On error path is unchanged (an earlier version stays) and the
// temporary file is removed. write fills the file.
func WriteFile(path string, write func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return errors.Wrapf(err, "writing %q", path)
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return errors.Wrapf(err, "writing %q (not written; an earlier version, if any, is unchanged)", path)
	}
	_ = syncFile(dir)
	return nil
}

func writeSynced(path string, data []byte) error {
	return WriteFile(path, func(w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(data))
		return err
	})
}

// syncFile fsyncs a file or a folder.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return errors.Wrap(err, "grcheckpoint")
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Wrapf(err, "grcheckpoint: syncing %q", path)
	}
	return nil
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}
