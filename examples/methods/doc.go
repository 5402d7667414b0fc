// Package methods adds three SAM-family methods to gradreg from outside package optimizers, through its
// public method API (gr.NewMethod, gr.Register, gr.Step): GSAM, LookSAM and FriendlySAM. Each is one file of
// at most 40 lines, and gets every option of gradreg (Every, WarmUp, ZeroWarmUp, Metrics, checkpoints of its
// state, the second pass's hygiene) without its code knowing. Importing the package registers them as
// gr_method values "gsam", "looksam" and "friendlysam".
//
// Defaults follow kozistr/pytorch_optimizer (sam.py: GSAM, LookSAM, FriendlySAM) unless a doc comment says
// otherwise; δ = gr.NormStabilizer (1e-12) stabilizes every norm that divides.
package methods

import "math"

var inf = math.Inf(1)
