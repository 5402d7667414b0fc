package gr_test

import "math"

// Independent float64 reference for the tanh model of problem, written by hand (no GoMLX):
//
//	L(θ) = (1/n) Σᵢ (predᵢ − tᵢ)² + λ‖W‖²,   predᵢ = Σⱼ vⱼ tanh(zᵢⱼ),   zᵢⱼ = Σₖ xᵢₖ Wₖⱼ
//	∂L/∂vⱼ  = (2/n) Σᵢ rᵢ tanh(zᵢⱼ)                          rᵢ = predᵢ − tᵢ
//	∂L/∂Wₖⱼ = (2/n) Σᵢ rᵢ vⱼ (1 − tanh²(zᵢⱼ)) xᵢₖ + 2λWₖⱼ
//
// The gradient is evaluated on dual numbers a + b·ϵ (ϵ² = 0), so that gradDual(θ + ϵu) returns
// ∇L(θ) + ϵ·H(θ)u: the Hessian-vector product exactly (forward-over-reverse by hand).
// With linear=true the tanh is omitted and W is frozen (only v is trained; its gradient only is returned
// for v, and zero for W).

type dual struct{ a, b float64 }

func (x dual) add(y dual) dual      { return dual{x.a + y.a, x.b + y.b} }
func (x dual) sub(y dual) dual      { return dual{x.a - y.a, x.b - y.b} }
func (x dual) mul(y dual) dual      { return dual{x.a * y.a, x.a*y.b + x.b*y.a} }
func (x dual) scale(c float64) dual { return dual{c * x.a, c * x.b} }
func (x dual) tanh() dual {
	t := math.Tanh(x.a)
	return dual{t, (1 - t*t) * x.b}
}

// gradDual returns ∇L at θ + ϵu, as duals.
func (p *problem) gradDual(theta, u []float64, linear bool) []dual {
	in, hid, n := p.in(), p.hidden, len(p.x)
	th := make([]dual, len(theta))
	for i := range theta {
		th[i] = dual{theta[i], u[i]}
	}
	w, v := th[:in*hid], th[in*hid:]
	grad := make([]dual, len(theta))
	gw, gv := grad[:in*hid], grad[in*hid:]
	for i := range n {
		h := make([]dual, hid)
		var pred dual
		for j := range hid {
			var z dual
			for k := range in {
				z = z.add(w[k*hid+j].scale(p.x[i][k]))
			}
			if linear {
				h[j] = z
			} else {
				h[j] = z.tanh()
			}
			pred = pred.add(v[j].mul(h[j]))
		}
		r := pred.sub(dual{p.t[i], 0}).scale(2 / float64(n))
		for j := range hid {
			gv[j] = gv[j].add(r.mul(h[j]))
			if linear {
				continue
			}
			d := dual{1, 0}.sub(h[j].mul(h[j])) // 1 − tanh²
			rvd := r.mul(v[j]).mul(d)
			for k := range in {
				gw[k*hid+j] = gw[k*hid+j].add(rvd.scale(p.x[i][k]))
			}
		}
	}
	if !linear {
		for k := range gw {
			gw[k] = gw[k].add(w[k].scale(2 * p.lambda))
		}
	} else {
		for k := range gw {
			gw[k] = dual{}
		}
	}
	return grad
}

// grad returns ∇L(θ).
func (p *problem) grad(theta []float64, linear bool) []float64 {
	d := p.gradDual(theta, make([]float64, len(theta)), linear)
	out := make([]float64, len(d))
	for i := range d {
		out[i] = d[i].a
	}
	return out
}

// hvp returns H(θ)u.
func (p *problem) hvp(theta, u []float64, linear bool) []float64 {
	d := p.gradDual(theta, u, linear)
	out := make([]float64, len(d))
	for i := range d {
		out[i] = d[i].b
	}
	return out
}

// Small vector helpers.
func axpy(a float64, x, y []float64) []float64 { // a·x + y
	out := make([]float64, len(x))
	for i := range x {
		out[i] = a*x[i] + y[i]
	}
	return out
}

func scaleVec(a float64, x []float64) []float64 { return axpy(a, x, make([]float64, len(x))) }

func normVec(x []float64) float64 {
	var s float64
	for _, xi := range x {
		s += xi * xi
	}
	return math.Sqrt(s)
}

// loss returns L(θ) for the tanh model.
func (p *problem) loss(theta []float64) float64 {
	in, hid := p.in(), p.hidden
	w, v := theta[:in*hid], theta[in*hid:]
	var sum float64
	for i := range p.x {
		var pred float64
		for j := range hid {
			var z float64
			for k := range in {
				z += p.x[i][k] * w[k*hid+j]
			}
			pred += v[j] * math.Tanh(z)
		}
		sum += (pred - p.t[i]) * (pred - p.t[i])
	}
	var reg float64
	for _, wk := range w {
		reg += wk * wk
	}
	return sum/float64(len(p.x)) + p.lambda*reg
}
