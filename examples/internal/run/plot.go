package run

import (
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/gradreg/gradreg/optimizers/grcheckpoint"
)

var palette = []color.NRGBA{
	{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, {R: 0xd6, G: 0x27, B: 0x28, A: 255}, {R: 0x2c, G: 0xa0, B: 0x2c, A: 255},
	{R: 0xff, G: 0x7f, B: 0x0e, A: 255}, {R: 0x94, G: 0x67, B: 0xbd, A: 255}, {R: 0x8c, G: 0x56, B: 0x4b, A: 255},
	{R: 0xe3, G: 0x77, B: 0xc2, A: 255}, {R: 0x7f, G: 0x7f, B: 0x7f, A: 255},
}

// series is one line of a panel.
type series struct {
	label string
	xys   plotter.XYs
	err   []float64 // optional ± error bars (same length as xys)
}

// newPanel builds a plot of lines (with error bars where given).
func newPanel(title, ylabel string, lines []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "step"
	p.Y.Label.Text = ylabel
	p.Add(plotter.NewGrid())
	for i, s := range lines {
		if len(s.xys) == 0 {
			continue
		}
		c := palette[i%len(palette)]
		line, points, err := plotter.NewLinePoints(s.xys)
		if err != nil {
			return nil, err
		}
		line.Color, points.Color = c, c
		if cycle := i / len(palette); cycle > 0 { // More lines than colors: dashed, then dotted.
			line.Dashes = [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(1.5), vg.Points(2.5)}}[cycle%3]
		}
		line.Width = vg.Points(1.5)
		points.Radius = vg.Points(1.5)
		p.Add(line, points)
		if s.err != nil {
			bars := make(errPoints, len(s.xys))
			for j := range s.xys {
				bars[j] = errPoint{s.xys[j].X, s.xys[j].Y, s.err[j]}
			}
			eb, err := plotter.NewYErrorBars(bars)
			if err != nil {
				return nil, err
			}
			eb.Color = c
			p.Add(eb)
		}
		p.Legend.Add(s.label, line)
	}
	// The legend is drawn beside the plot, not over it (savePanels).
	return p, nil
}

type errPoint struct{ x, y, e float64 }
type errPoints []errPoint

func (e errPoints) Len() int                         { return len(e) }
func (e errPoints) XY(i int) (float64, float64)      { return e[i].x, e[i].y }
func (e errPoints) YError(i int) (low, high float64) { return e[i].e, e[i].e }

// savePanels writes the panels side by side as a PNG, each with its legend to its right, outside the data
// area, so that no legend covers a line whatever the number of entries.
func savePanels(path string, panels []*plot.Plot) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	const plotW, h, pad, top = 5.5 * vg.Inch, 4.5 * vg.Inch, 3 * vg.Millimeter, 9 * vg.Millimeter
	legends := make([]plot.Legend, len(panels))
	widths := make([]vg.Length, len(panels))
	total := vg.Length(0)
	for i, p := range panels {
		legends[i] = p.Legend
		legends[i].Top, legends[i].Left = true, true
		p.Legend = plot.NewLegend() // Drawn beside the plot below, not inside it.
		r := legends[i].Rectangle(draw.Canvas{})
		widths[i] = r.Max.X - r.Min.X
		total += plotW + widths[i] + 3*pad
	}
	img := vgimg.New(total, h)
	dc := draw.New(img)
	x := vg.Length(0)
	for i, p := range panels {
		p.Draw(draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{X: x + pad, Y: pad},
			Max: vg.Point{X: x + plotW, Y: h - pad}}})
		legends[i].Draw(draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: x + plotW + pad, Y: pad}, Max: vg.Point{X: x + plotW + pad + widths[i], Y: h - top}}})
		x += plotW + widths[i] + 3*pad
	}
	return grcheckpoint.WriteFile(path, func(w io.Writer) error {
		_, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w)
		return err
	})
}

// curveSeries is one value of a run's curve against the step (points where get returns NaN are left out).
func curveSeries(label string, curve []Point, get func(Point) float64) series {
	s := series{label: label}
	for _, p := range curve {
		if y := get(p); !math.IsNaN(y) {
			s.xys = append(s.xys, plotter.XY{X: float64(p.Step), Y: y})
		}
	}
	return s
}

func gradNorm(p Point) float64 {
	if p.GradNorm == nil {
		return math.NaN()
	}
	return *p.GradNorm
}

func curvature(p Point) float64 {
	if p.Curvature == nil {
		return math.NaN()
	}
	return *p.Curvature
}

// plotRun writes a single run's curves: loss, accuracy, and the GR metrics when the method has them.
func plotRun(path, title string, res *Result) error {
	c := res.Curve
	loss, err := newPanel(title+": loss", "loss", []series{
		curveSeries("train", c, func(p Point) float64 { return p.TrainLoss }),
		curveSeries("test", c, func(p Point) float64 { return p.TestLoss })})
	if err != nil {
		return err
	}
	acc, err := newPanel(title+": accuracy", "accuracy", []series{
		curveSeries("train", c, func(p Point) float64 { return p.TrainAccuracy }),
		curveSeries("test", c, func(p Point) float64 { return p.TestAccuracy })})
	if err != nil {
		return err
	}
	panels := []*plot.Plot{loss, acc}
	if len(c) > 0 && c[len(c)-1].GradNorm != nil {
		gn, err := newPanel(title+": ‖g₁‖", "‖g₁‖", []series{curveSeries("‖g₁‖", c, gradNorm)})
		if err != nil {
			return err
		}
		gh, err := newPanel(title+": g₁ᵀHg₁", "g₁ᵀHg₁", []series{curveSeries("g₁ᵀHg₁", c, curvature)})
		if err != nil {
			return err
		}
		panels = append(panels, gn, gh)
	}
	return savePanels(path, panels)
}

// meanCurve returns, per point index, the mean and the sample std over seeds of get (points are at the
// same steps for every seed of an entry).
func meanCurve(label string, rs []*Result, get func(Point) float64) series {
	s := series{label: label}
	if len(rs) == 0 {
		return s
	}
	n := len(rs[0].Curve)
	for _, r := range rs {
		n = min(n, len(r.Curve))
	}
	for j := range n {
		var ys []float64
		for _, r := range rs {
			if y := get(r.Curve[j]); !math.IsNaN(y) {
				ys = append(ys, y)
			}
		}
		if len(ys) == 0 {
			continue
		}
		m := MeanStd(ys)
		s.xys = append(s.xys, plotter.XY{X: float64(rs[0].Curve[j].Step), Y: m.Mean})
		s.err = append(s.err, m.Std)
	}
	return s
}

// plotAccuracy writes the test accuracy of each entry against the step, mean over seeds with ± std bars.
func plotAccuracy(path, title string, rep *Report) error {
	var lines []series
	for i, e := range rep.Entries {
		lines = append(lines, meanCurve(e.Label(), rep.Results[i], func(p Point) float64 { return p.TestAccuracy }))
	}
	p, err := newPanel(title+": test accuracy (mean ± std over seeds)", "test accuracy", lines)
	if err != nil {
		return err
	}
	return savePanels(path, []*plot.Plot{p})
}

// plotMetrics writes ‖g₁‖ and g₁ᵀHg₁ against the step, per entry (mean over seeds), for the entries that
// compute them (the gr methods; not SGD nor flooding).
func plotMetrics(path, title string, rep *Report) error {
	var gn, gh []series
	for i, e := range rep.Entries {
		gn = append(gn, meanCurve(e.Label(), rep.Results[i], gradNorm))
		gh = append(gh, meanCurve(e.Label(), rep.Results[i], curvature))
	}
	p1, err := newPanel(title+": ‖g₁‖", "‖g₁‖ (mean over the steps between points)", gn)
	if err != nil {
		return err
	}
	p2, err := newPanel(title+": g₁ᵀHg₁", "g₁ᵀHg₁", gh)
	if err != nil {
		return err
	}
	return savePanels(path, []*plot.Plot{p1, p2})
}
