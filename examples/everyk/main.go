// Command everyk studies Every(k), the reuse of a stored gradient-regularization correction for k steps, in
// the main job's setting of examples/mnist (a 2000-image MNIST subset with 40 % label noise, MLP 784-64-10,
// momentum 0.9, lr 0.05 with cosine decay, batch 64, 620 steps).
//
// -probe trains F-GR with Every(k) for each k of -k and measures, at every step, the correction it applies
// (stored at the last full step, t ≡ 0 mod k) against the fresh one it would compute now,
// c = (γ/ε)[∇L(θ + εg₁) − g₁]: their norms, the cosine between them and their cosines with g₁. The probe
// computes the fresh correction on every step, so it costs a full F-GR step; its updates are those of
// Every(k).
//
//	go run ./examples/everyk -probe -k=1,2,5,10,20 -seeds=3
//
// -frontier reads a comparison's JSON (examples/mnist -compare=sgd,forward,forward:gr_every=2,...) and
// draws each method's test-accuracy gain over the first entry (SGD), with its 95 % interval, against the
// CPU time per step relative to it:
//
//	go run ./examples/everyk -frontier=out/mnist_compare.json -png=docs/experiments_everyk_frontier.png
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/pkg/errors"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/gradreg/gradreg/examples/internal/mnistdata"
	"github.com/gradreg/gradreg/examples/internal/run"
	"github.com/gradreg/gradreg/examples/internal/sgdm"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

var (
	flagProbe    = flag.Bool("probe", false, "measure the stored correction of F-GR Every(k) against the fresh one")
	flagK        = flag.String("k", "1,2,5,10,20", "-probe: comma-separated values of k")
	flagSeeds    = flag.Int("seeds", 3, "-probe: seeds 1..N per k")
	flagSteps    = flag.Int("steps", 620, "-probe: training steps (620 = the main job's 20 epochs)")
	flagFrontier = flag.String("frontier", "", "comparison JSON to draw the gain-versus-cost frontier from")
	flagPNG      = flag.String("png", "everyk_frontier.png", "-frontier: output PNG")
)

func main() {
	flag.Parse()
	var err error
	switch {
	case *flagFrontier != "":
		err = frontier(*flagFrontier, *flagPNG)
	case *flagProbe:
		err = probe()
	default:
		err = errors.New("give -probe or -frontier=FILE (see -h)")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "everyk: %v\n", err)
		os.Exit(1)
	}
}

// probeMessage is the message of the probe's logged node.
const probeMessage = "everyk probe"

// probeMethod builds the probe's gradient for Every(k) (γ and ε: the F-GR defaults) and logs, each step,
// [‖c‖, ‖f‖, ⟨c, f⟩, ⟨c, g₁⟩, ⟨f, g₁⟩, ‖g₁‖, ‖Σ c‖] for the applied correction c, the fresh one f and the sum
// of the corrections applied so far.
func probeMethod(k int) func(s *gr.Step) []*Node {
	return func(s *gr.Step) []*Node {
		g1 := s.Grad()
		eps, gamma := s.Param(gr.ParamEpsilon), s.Param(gr.ParamGamma)
		fresh := grvec.ScaleVec(Div(gamma, eps), grvec.SubVec(s.GradAt(grvec.ScaleVec(eps, g1)), g1))
		step := s.GlobalStep()
		refresh := Equal(Mod(step, Scalar(step.Graph(), step.DType(), k)), ScalarZero(step.Graph(), step.DType()))
		stored := s.State("everyk_c")
		c := make([]*Node, len(fresh))
		for i := range fresh {
			c[i] = Where(refresh, fresh[i], stored[i])
		}
		s.SetState("everyk_c", c)
		sum := grvec.AddVec(s.State("everyk_sum"), c) // Σ_t c_t, the corrections applied so far.
		s.SetState("everyk_sum", sum)
		stats := Stack([]*Node{grvec.GlobalNorm(c), grvec.GlobalNorm(fresh), grvec.InnerProduct(c, fresh),
			grvec.InnerProduct(c, g1), grvec.InnerProduct(fresh, g1), grvec.GlobalNorm(g1), grvec.GlobalNorm(sum)}, 0)
		stats.SetLogged(probeMessage)
		return grvec.AddVec(g1, c)
	}
}

// probeStats accumulates the probe's measurements over the stale steps (t ≢ 0 mod k; all steps for k = 1).
type probeStats struct {
	n                                          int
	normC, normFresh, cos, cosCG, cosFG, cGpar float64
	normSum, sumNorms                          float64 // ‖Σ_t c_t‖ at the last step, Σ_t ‖c_t‖ (all steps)
}

// addSum records ‖Σ c‖ and ‖c‖ of every step (v as logged).
func (p *probeStats) addSum(v []float64) {
	p.normSum = v[6]
	p.sumNorms += v[0]
}

func (p *probeStats) add(v []float64) {
	normC, normF, cf, cg, fg, g := v[0], v[1], v[2], v[3], v[4], v[5]
	if normC == 0 || normF == 0 || g == 0 {
		return
	}
	p.n++
	p.normC += normC
	p.normFresh += normF
	p.cos += cf / (normC * normF)
	p.cosCG += cg / (normC * g)
	p.cosFG += fg / (normF * g)
	p.cGpar += cg / g // component of c along g₁
}

func (p *probeStats) merge(q *probeStats) {
	p.n += q.n
	p.normC += q.normC
	p.normFresh += q.normFresh
	p.cos += q.cos
	p.cosCG += q.cosCG
	p.cosFG += q.cosFG
	p.cGpar += q.cGpar
	p.normSum += q.normSum
	p.sumNorms += q.sumNorms
}

func (p *probeStats) mean() probeStats {
	n := float64(max(p.n, 1))
	return probeStats{n: p.n, normC: p.normC / n, normFresh: p.normFresh / n, cos: p.cos / n, cosCG: p.cosCG / n,
		cosFG: p.cosFG / n, cGpar: p.cGpar / n, normSum: p.normSum, sumNorms: p.sumNorms}
}

func probe() error {
	var ks []int
	for _, f := range strings.Split(*flagK, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			return errors.Errorf("-k: %q is not a positive integer", f)
		}
		ks = append(ks, k)
	}
	if *flagSeeds < 1 || *flagSteps < 1 {
		return errors.Errorf("-seeds (%d) and -steps (%d) must be positive", *flagSeeds, *flagSteps)
	}
	backend, err := grbackend.New()
	if err != nil {
		return err
	}
	fmt.Printf("F-GR (γ = ε = %g) with Every(k), main job's setting, %d steps, seeds 1..%d; stale steps: t ≢ 0 mod k "+
		"(all steps for k = 1). c: the applied (stored) correction, f: the fresh one, g: g₁; the last column: ‖Σₜ cₜ‖ at the end over Σₜ ‖cₜ‖, all steps (how much the applied corrections add up rather than cancel).\n\n", gr.DefaultGamma,
		*flagSteps, *flagSeeds)
	fmt.Println("| k | test accuracy (mean over seeds) | ‖c‖ | ‖f‖ | ‖c‖/‖f‖ | cos(c, f) | cos(c, g) | cos(f, g) | " +
		"⟨c, g⟩/‖g‖ | ‖Σₜ cₜ‖ / Σₜ ‖cₜ‖ |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range ks {
		var acc float64
		all := &probeStats{}
		for seed := int64(1); seed <= int64(*flagSeeds); seed++ {
			a, st, err := probeRun(backend, k, seed)
			if err != nil {
				return err
			}
			acc += a / float64(*flagSeeds)
			all.merge(st)
		}
		m := all.mean()
		fmt.Printf("| %d | %.2f%% | %.4f | %.4f | %.3f | %.3f | %.3f | %.3f | %.4f | %.4f |\n", k, 100*acc, m.normC,
			m.normFresh, m.normC/m.normFresh, m.cos, m.cosCG, m.cosFG, m.cGpar, m.normSum/m.sumNorms)
	}
	return nil
}

// probeRun trains one seed with the probe and returns the test accuracy and the sums over stale steps.
func probeRun(backend backends.Backend, k int, seed int64) (float64, *probeStats, error) {
	ctx := context.New()
	if err := ctx.SetRNGStateFromSeed(seed); err != nil {
		return 0, nil, err
	}
	ctx.SetParams(map[string]any{mnistdata.ParamTrainSize: 2000, mnistdata.ParamLabelNoise: 0.4, run.ParamBatch: 64})
	data, err := mnistdata.Data(ctx, seed)
	if err != nil {
		return 0, nil, err
	}
	base := &sgdm.Optimizer{LR: 0.05, Momentum: 0.9, TotalSteps: *flagSteps}
	opt, err := gr.NewMethod("EveryKProbe", probeMethod(k))(base).
		Declare(gr.Hyperparameter{Key: gr.ParamGamma, Default: gr.DefaultGamma, Max: math.Inf(1)},
			gr.Hyperparameter{Key: gr.ParamEpsilon, Default: gr.DefaultEpsilon, Max: math.Inf(1)}).
		Build()
	if err != nil {
		return 0, nil, err
	}
	trainer := gr.NewTrainer(backend, ctx, model, mnistdata.CrossEntropy, opt, nil,
		[]metrics.Interface{metrics.NewSparseCategoricalAccuracy("Mean Accuracy", "#acc")})
	stats := &probeStats{}
	var step int
	trainer.OnExecCreation(func(exec *context.Exec, graphType train.GraphType) {
		if graphType != train.TrainType {
			return
		}
		previous := exec.GetNodeLogger()
		exec.SetNodeLogger(func(g *Graph, messages []string, values []*tensors.Tensor, nodes []NodeId) {
			var restM []string
			var restV []*tensors.Tensor
			var restN []NodeId
			for i, m := range messages {
				if m != probeMessage {
					restM, restV, restN = append(restM, m), append(restV, values[i]), append(restN, nodes[i])
					continue
				}
				v := make([]float64, 7)
				for j, x := range tensors.MustCopyFlatData[float32](values[i]) {
					v[j] = float64(x)
				}
				stats.addSum(v)
				if k == 1 || step%k != 0 {
					stats.add(v)
				}
			}
			if len(restM) > 0 && previous != nil {
				previous(g, restM, restV, restN)
			}
		})
	})
	for step = 0; step < *flagSteps; step++ {
		_, inputs, labels, err := data.Train.Yield()
		if err != nil {
			return 0, nil, err
		}
		if _, err := gr.TrainStep(trainer, nil, inputs, labels); err != nil {
			return 0, nil, errors.WithMessagef(err, "k=%d, seed %d, step %d", k, seed, step)
		}
	}
	data.Test.Reset()
	m, err := trainer.Eval(data.Test)
	if err != nil {
		return 0, nil, err
	}
	acc := shapes.ConvertTo[float64](m[len(m)-1].Value())
	fmt.Fprintf(os.Stderr, "k=%d seed %d: test accuracy %.4f\n", k, seed, acc)
	return acc, stats, nil
}

// model is the main job's MLP 784-64-10 (ReLU).
func model(ctx *context.Context, _ any, inputs []*Node) []*Node {
	x := activations.Relu(layers.Dense(ctx.In("hidden_0"), inputs[0], true, 64))
	return []*Node{layers.Dense(ctx.In("logits"), x, true, 10)}
}

// row is what -frontier reads from a comparison's JSON.
type row struct {
	Entry string `json:"entry"`
	Diff  *struct {
		Mean float64  `json:"mean"`
		Lo   *float64 `json:"lo"`
		Hi   *float64 `json:"hi"`
	} `json:"diff"`
	RelativeCPU float64 `json:"step_cpu_relative"`
}

// point is one entry of the frontier: k, CPU cost relative to the reference (x), gain in points (y) and
// the half-width of its 95 % interval (0 when undefined).
type point struct {
	k         int
	x, y, err float64
}

// frontierPoints reads the comparison's JSON and returns the points by method label (entries whose only
// setting is gr_every, or none); ref is the first entry's label.
func frontierPoints(file string) (series map[string][]point, err error) {
	series, _, err = readFrontier(file)
	return series, err
}

func readFrontier(file string) (map[string][]point, string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", err
	}
	var rep struct {
		Rows []row `json:"rows"`
	}
	if err := json.Unmarshal(data, &rep); err != nil || len(rep.Rows) == 0 {
		return nil, "", errors.Errorf("-frontier: %s is not a comparison's JSON (%v)", file, err)
	}
	series := map[string][]point{}
	for _, r := range rep.Rows[1:] {
		if r.Diff == nil || r.RelativeCPU == 0 {
			continue
		}
		name, settings, _ := strings.Cut(r.Entry, " ")
		k := 1
		if v, ok := strings.CutPrefix(settings, "gr_every="); ok {
			if k, err = strconv.Atoi(v); err != nil {
				return nil, "", errors.Errorf("-frontier: entry %q: cannot read k", r.Entry)
			}
		} else if settings != "" {
			continue
		}
		half := 0.0
		if r.Diff.Lo != nil && r.Diff.Hi != nil {
			half = (*r.Diff.Hi - *r.Diff.Lo) / 2
		}
		series[name] = append(series[name], point{k: k, x: r.RelativeCPU, y: 100 * r.Diff.Mean, err: 100 * half})
	}
	if len(series) == 0 {
		return nil, "", errors.Errorf("-frontier: %s has no entries with a difference to %s and a CPU time", file,
			rep.Rows[0].Entry)
	}
	for _, pts := range series {
		sort.Slice(pts, func(a, b int) bool { return pts[a].k < pts[b].k })
	}
	return series, rep.Rows[0].Entry, nil
}

func frontier(file, png string) error {
	series, ref, err := readFrontier(file)
	if err != nil {
		return err
	}
	p := plot.New()
	p.Title.Text = "Every(k): gain over " + ref + " vs step cost (labels: k)"
	p.X.Label.Text = "CPU time per step / " + ref + "'s"
	p.Y.Label.Text = "test accuracy gain (points, 95% CI)"
	p.Add(plotter.NewGrid())
	colors := []color.NRGBA{{R: 0xd6, G: 0x27, B: 0x28, A: 255}, {R: 0x1f, G: 0x77, B: 0xb4, A: 255},
		{R: 0x2c, G: 0xa0, B: 0x2c, A: 255}, {R: 0xff, G: 0x7f, B: 0x0e, A: 255}}
	names := make([]string, 0, len(series))
	for name := range series {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		pts := series[name]
		xys := make(plotter.XYs, len(pts))
		errs := make(plotter.YErrors, len(pts))
		labels := make([]string, len(pts))
		for j, pt := range pts {
			xys[j] = plotter.XY{X: pt.x, Y: pt.y}
			errs[j] = struct{ Low, High float64 }{pt.err, pt.err}
			labels[j] = strconv.Itoa(pt.k)
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		c := colors[i%len(colors)]
		line.Color, points.Color = c, c
		points.Shape = draw.CircleGlyph{}
		bars, err := plotter.NewYErrorBars(struct {
			plotter.XYer
			plotter.YErrorer
		}{xys, errs})
		if err != nil {
			return err
		}
		bars.Color = c
		lab, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return err
		}
		for j := range lab.TextStyle {
			lab.TextStyle[j].Color = c
			lab.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(2)}
		}
		p.Add(line, points, bars, lab)
		p.Legend.Add(name, line, points)
	}
	p.Legend.Top = false // Bottom right: the large-k points lie left, the gains of small k high.
	p.X.Min -= 0.03
	p.X.Max += 0.06
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, png); err != nil {
		return err
	}
	for _, name := range names {
		for _, pt := range series[name] {
			fmt.Printf("%s k=%d: %.2f× CPU, %+.2f ± %.2f points\n", name, pt.k, pt.x, pt.y, pt.err)
		}
	}
	fmt.Println("wrote", png)
	return nil
}
