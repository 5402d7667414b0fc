package main

import (
	"fmt"
	"image/color"
	"math"
	"strings"
	"time"

	"github.com/gomlx/gomlx/backends"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// compare trains every method with seeds seed, seed+1, …: the same seed gives every method the same
// initialization and data order.
func compare(backend backends.Backend, cfg runConfig, methods []string, seed int64, seeds int,
	trainData, test *Split) (map[string][]*runResult, error) {
	results := map[string][]*runResult{}
	for _, m := range methods {
		for s := range seeds {
			c := cfg
			c.Method, c.Seed = m, seed+int64(s)
			fmt.Printf("%s, seed %d:\n", methodLabel(m), c.Seed)
			res, err := trainRun(backend, c, trainData, test)
			if err != nil {
				return nil, err
			}
			fmt.Printf("  test accuracy %.4f, train loss %.4f, %s/step\n", res.TestAccuracy, res.TrainLoss,
				res.StepTime.Round(time.Microsecond))
			res.Ctx = nil
			results[m] = append(results[m], res)
		}
	}
	return results, nil
}

// meanStd returns the mean and the sample standard deviation (0 for one value).
func meanStd(xs []float64) (mean, std float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)-1))
}

// medianStepTime is the mean over seeds of each run's median step time.
func medianStepTime(rs []*runResult) time.Duration {
	var total time.Duration
	for _, r := range rs {
		total += r.StepTime
	}
	return total / time.Duration(len(rs))
}

// formatTable prints method, test accuracy mean ± std, final train loss and time per step relative to SGD
// (to the first method when SGD is not compared).
func formatTable(methods []string, results map[string][]*runResult) string {
	ref := methods[0]
	for _, m := range methods {
		if m == "sgd" || m == "none" {
			ref = m
		}
	}
	refTime := medianStepTime(results[ref])
	var b strings.Builder
	fmt.Fprintf(&b, "| method | test accuracy | train loss | time/step vs %s |\n|---|---|---|---|\n", methodLabel(ref))
	for _, m := range methods {
		var acc, loss []float64
		for _, r := range results[m] {
			acc = append(acc, r.TestAccuracy)
			loss = append(loss, r.TrainLoss)
		}
		am, as := meanStd(acc)
		lm, _ := meanStd(loss)
		t := medianStepTime(results[m])
		fmt.Fprintf(&b, "| %s | %.2f%% ± %.2f | %.4f | %.2f× (%s) |\n", methodLabel(m), 100*am, 100*as, lm,
			float64(t)/float64(refTime), t.Round(time.Millisecond/10))
	}
	return b.String()
}

// plotCurves writes test accuracy against step, one line (mean over seeds) per method with a band from the
// lowest to the highest seed.
func plotCurves(path, title string, methods []string, results map[string][]*runResult) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "step"
	p.Y.Label.Text = "test accuracy"
	p.Add(plotter.NewGrid())
	for i, m := range methods {
		rs := results[m]
		n := len(rs[0].Curve)
		mean := make(plotter.XYs, n)
		lo := make(plotter.XYs, n)
		hi := make(plotter.XYs, n)
		for j := range n {
			lo[j].Y, hi[j].Y = math.Inf(1), math.Inf(-1)
			for _, r := range rs {
				a := r.Curve[j].Accuracy
				mean[j].Y += a / float64(len(rs))
				lo[j].Y, hi[j].Y = math.Min(lo[j].Y, a), math.Max(hi[j].Y, a)
			}
			x := float64(rs[0].Curve[j].Step)
			mean[j].X, lo[j].X, hi[j].X = x, x, x
		}
		c := palette[i%len(palette)]
		if len(rs) > 1 {
			band := append(plotter.XYs{}, lo...)
			for j := n - 1; j >= 0; j-- {
				band = append(band, hi[j])
			}
			poly, err := plotter.NewPolygon(band)
			if err != nil {
				return err
			}
			poly.Color = color.NRGBA{R: c.R, G: c.G, B: c.B, A: 60}
			poly.LineStyle.Width = 0
			p.Add(poly)
		}
		line, points, err := plotter.NewLinePoints(mean)
		if err != nil {
			return err
		}
		line.Color, points.Color = c, c
		line.Width = vg.Points(1.5)
		p.Add(line, points)
		p.Legend.Add(methodLabel(m), line)
	}
	p.Legend.Top = false
	p.Legend.Left = false
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}

var palette = []color.NRGBA{
	{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, {R: 0xd6, G: 0x27, B: 0x28, A: 255}, {R: 0x2c, G: 0xa0, B: 0x2c, A: 255},
	{R: 0xff, G: 0x7f, B: 0x0e, A: 255}, {R: 0x94, G: 0x67, B: 0xbd, A: 255}, {R: 0x8c, G: 0x56, B: 0x4b, A: 255},
	{R: 0xe3, G: 0x77, B: 0xc2, A: 255}, {R: 0x7f, G: 0x7f, B: 0x7f, A: 255},
}
