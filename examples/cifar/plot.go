package main

import (
	"fmt"
	"math/rand"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotCurves writes a PNG with two panels: train/test loss and train/test accuracy against the step.
func plotCurves(path string, c *config, points []point) error {
	title := fmt.Sprintf("CIFAR %s %s, %s", c.Dataset, c.Model, c.Method)
	series := func(f func(p point) float64) plotter.XYs {
		xys := make(plotter.XYs, len(points))
		for i, p := range points {
			xys[i].X, xys[i].Y = float64(p.Step), f(p)
		}
		return xys
	}
	lossPlot := plot.New()
	lossPlot.Title.Text = title + ": loss"
	lossPlot.X.Label.Text = "step"
	accPlot := plot.New()
	accPlot.Title.Text = title + ": accuracy"
	accPlot.X.Label.Text = "step"
	if err := plotutil.AddLinePoints(lossPlot,
		"train", series(func(p point) float64 { return p.TrainLoss }),
		"test", series(func(p point) float64 { return p.TestLoss })); err != nil {
		return err
	}
	if err := plotutil.AddLinePoints(accPlot,
		"train", series(func(p point) float64 { return p.TrainAcc }),
		"test", series(func(p point) float64 { return p.TestAcc })); err != nil {
		return err
	}
	const w, h = 12 * vg.Inch, 4.5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{{lossPlot, accPlot}}, tiles, dc)
	lossPlot.Draw(canvases[0][0])
	accPlot.Draw(canvases[0][1])
	return writePNG(path, img)
}

func writePNG(path string, img *vgimg.Canvas) error {
	f, err := createFile(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }
