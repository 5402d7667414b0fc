package main

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/gradreg/gradreg/optimizers/grcheckpoint"
)

// Plot writes dln_test_error.png and dln_alpha_eff.png: against α (log scale), one curve per method.
func Plot(dir string, c Config, results []*Result) error {
	cells := Aggregate(results)
	methods := c.methods()
	title := fmt.Sprintf("DLN d=%d n=%d k=%d, γ=%g, %d seeds", c.D, c.N, c.K, c.Gamma, c.Seeds)
	if err := plotMetric(filepath.Join(dir, "dln_test_error.png"), title, "test error ‖w − w*‖²", true, methods,
		cells, func(cell *Cell) float64 { return cell.TestError }); err != nil {
		return err
	}
	return plotMetric(filepath.Join(dir, "dln_alpha_eff.png"), title, "α_eff / α (geometric mean)", false, methods,
		cells, func(cell *Cell) float64 { return cell.AlphaEff / cell.Alpha })
}

func plotMetric(path, title, ylabel string, logY bool, methods []Method, cells []*Cell, value func(*Cell) float64) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "α (initialization scale)"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Add(plotter.NewGrid())
	var all []plotter.XYs
	for i, m := range methods {
		var xys plotter.XYs
		for _, cell := range cells {
			y := value(cell)
			if cell.Method != m || math.IsNaN(y) || (logY && y <= 0) {
				continue
			}
			xys = append(xys, plotter.XY{X: cell.Alpha, Y: y})
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		col := palette[i%len(palette)]
		line.Color, points.Color = col, col
		line.Width = vg.Points(1.5)
		points.Shape = shapes[i%len(shapes)]
		if m.Name == "forward" || m.Name == "central" {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(line, points)
		p.Legend.Add(m.Label(), line, points)
		all = append(all, xys)
	}
	// A log axis needs a range: one α (or one value) gets a decade around it.
	if p.X.Min == p.X.Max {
		p.X.Min, p.X.Max = p.X.Min/3, p.X.Max*3
	}
	if logY && p.Y.Min == p.Y.Max {
		p.Y.Min, p.Y.Max = p.Y.Min/3, p.Y.Max*3
	}
	if logY && !(p.Y.Min > 0) { // No positive value to draw on a log axis.
		p.Y.Scale, p.Y.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
		logY = false
	}
	p.Legend.Top, p.Legend.Left = legendCorner(p, all, logY, len(all))
	wt, err := p.WriterTo(6*vg.Inch, 4.2*vg.Inch, "png")
	if err != nil {
		return err
	}
	return grcheckpoint.WriteFile(path, func(w io.Writer) error {
		_, err := wt.WriteTo(w)
		return err
	})
}

var palette = []color.NRGBA{
	{A: 255}, {R: 0x1f, G: 0x77, B: 0xb4, A: 255}, {R: 0xd6, G: 0x27, B: 0x28, A: 255},
	{R: 0xff, G: 0x7f, B: 0x0e, A: 255}, {R: 0x2c, G: 0xa0, B: 0x2c, A: 255}, {R: 0x94, G: 0x67, B: 0xbd, A: 255},
	{R: 0x8c, G: 0x56, B: 0x4b, A: 255}, {R: 0xe3, G: 0x77, B: 0xc2, A: 255},
}

var shapes = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{},
	draw.PyramidGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{}, draw.RingGlyph{}, draw.BoxGlyph{}}

// legendCorner returns the corner (top, left) whose legend box — about 40 % of the width and 6 % of the
// height per entry — the lines cross least, sampling each segment in the axes' (log or linear) coordinates.
func legendCorner(p *plot.Plot, lines []plotter.XYs, logY bool, entries int) (top, left bool) {
	norm := func(v, lo, hi float64, log bool) float64 {
		if log {
			v, lo, hi = math.Log(v), math.Log(lo), math.Log(hi)
		}
		if hi == lo {
			return 0.5
		}
		return (v - lo) / (hi - lo)
	}
	w, h := 0.4, math.Min(0.9, 0.04+0.06*float64(entries))
	count := map[[2]bool]int{}
	for _, xys := range lines {
		for i := range xys {
			next := i
			if i+1 < len(xys) {
				next = i + 1
			}
			for k := range 21 {
				t := float64(k) / 20
				x := norm(xys[i].X, p.X.Min, p.X.Max, true)*(1-t) + norm(xys[next].X, p.X.Min, p.X.Max, true)*t
				y := norm(xys[i].Y, p.Y.Min, p.Y.Max, logY)*(1-t) + norm(xys[next].Y, p.Y.Min, p.Y.Max, logY)*t
				for _, c := range [][2]bool{{true, true}, {true, false}, {false, true}, {false, false}} {
					inX := (c[1] && x <= w) || (!c[1] && x >= 1-w)
					inY := (c[0] && y >= 1-h) || (!c[0] && y <= h)
					if inX && inY {
						count[c]++
					}
				}
			}
		}
	}
	best := [2]bool{true, true}
	for _, c := range [][2]bool{{true, true}, {true, false}, {false, false}, {false, true}} {
		if count[c] < count[best] {
			best = c
		}
	}
	return best[0], best[1]
}
