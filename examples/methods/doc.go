// Package methods adds three SAM-family methods to gradreg from outside package optimizers, through its
// public method API (gr.NewMethod, gr.Register, gr.Step): GSAM, LookSAM and FriendlySAM. Each is one file of
// at most 40 lines, and gets every option of gradreg (Every, WarmUp, ZeroWarmUp, Metrics, checkpoints of its
// state, the second pass's hygiene) without its code knowing. Importing the package registers them as
// gr_method values "gsam", "looksam" and "friendlysam".
//
// Defaults follow kozistr/pytorch_optimizer (sam.py: GSAM, LookSAM, FriendlySAM) unless a doc comment says
// otherwise; δ = gr.NormStabilizer (1e-12) stabilizes every norm that divides.
package methods

import (
	"math"

	gr "github.com/gradreg/gradreg/optimizers"
)

var inf = math.Inf(1)

// alpha declares a method's own α in [0, 1] under key, named "Alpha (α)" so that Config.Alpha sets it.
func alpha(key string, def float64) gr.Hyperparameter {
	return gr.Hyperparameter{Key: key, Name: "Alpha (α)", Default: def, Min: 0, Max: 1}
}
