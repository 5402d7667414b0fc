// Package grcontrib adds six methods to gradreg from outside package gr, through its public method API
// (gr.NewMethod, gr.Register, gr.Step): GSAM, LookSAM, FriendlySAM, WSAM, random weight perturbation (RWP,
// which draws its perturbation from the context's random-number generator with Step.RandomNormal) and ESAM's
// stochastic weight perturbation (ESAM, which draws the variables it perturbs with Step.RandomUniform).
// Each is one file of 39–56 lines, and gets every option of gradreg (Every, WarmUp, ZeroWarmUp, Groups, Mask
// and Exclude, Metrics, checkpoints of its state, the second pass's hygiene) without its code knowing.
// Importing the package registers them as gr_method values "gsam", "looksam", "friendlysam", "wsam", "rwp"
// and "esam"; each hyperparameter that is a method's own has a key named after it (e.g. gr_gsam_alpha):
//
//	import _ "github.com/gradreg/gradreg/optimizers/grcontrib" // -set="gr_method=gsam;gr_gsam_alpha=0.3"
//
// Defaults follow kozistr/pytorch_optimizer (sam.py: GSAM, LookSAM, FriendlySAM) or the authors' code (WSAM,
// RWP) unless a doc comment says otherwise; δ = gr.NormStabilizer (1e-12) stabilizes every norm that divides.
package grcontrib

import (
	"math"

	gr "github.com/gradreg/gradreg/optimizers/gr"
)

var inf = math.Inf(1)

// alpha declares a method's own α in [0, 1] under key, named "Alpha (α)" so that Config.Alpha sets it.
func alpha(key string, def float64) gr.Hyperparameter {
	return gr.Hyperparameter{Key: key, Name: "Alpha (α)", Default: def, Min: 0, Max: 1}
}

// rho declares ρ (gr.ParamRho, [0, +∞)) with the method's default, named "Rho (ρ)" as gr's methods name it.
func rho(def float64) gr.Hyperparameter {
	return gr.Hyperparameter{Key: gr.ParamRho, Name: "Rho (ρ)", Default: def, Max: inf}
}
