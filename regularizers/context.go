package regularizers

import (
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/pkg/errors"
)

// Context hyperparameters read by FromContext, e.g. `-set="flood_method=flooding;flood_level=0.05"`.
const (
	// ParamFloodMethod selects the wrapper: "none" (the default: lossFn unchanged), "flooding", "iflood" or
	// "softad".
	ParamFloodMethod = "flood_method"

	// ParamFloodLevel is the flood level (SoftAD's threshold) b. Default: 0.
	ParamFloodLevel = "flood_level"

	// ParamSoftADSigma is SoftAD's scale σ. Default: DefaultSoftADSigma.
	ParamSoftADSigma = "softad_sigma"
)

// FromContext wraps lossFn as the context hyperparameters say: ParamFloodMethod picks Flooding, IFlood or
// SoftAD, with b from ParamFloodLevel and σ from ParamSoftADSigma. With method "none" (the default) it
// returns lossFn itself. Errors name the parameter and its valid values.
func FromContext(ctx *context.Context, lossFn train.LossFn) (train.LossFn, error) {
	method := context.GetParamOr(ctx, ParamFloodMethod, "none")
	b := context.GetParamOr(ctx, ParamFloodLevel, 0.0)
	sigma := context.GetParamOr(ctx, ParamSoftADSigma, DefaultSoftADSigma)
	switch method {
	case "none", "":
		return lossFn, nil
	case "flooding":
		if err := checkFinite("Flooding", ParamFloodLevel, b); err != nil {
			return nil, err
		}
		return Flooding(lossFn, b), nil
	case "iflood":
		if err := checkFinite("IFlood", ParamFloodLevel, b); err != nil {
			return nil, err
		}
		return IFlood(lossFn, b), nil
	case "softad":
		if err := checkSoftAD(b, sigma); err != nil {
			return nil, err
		}
		return SoftAD(lossFn, b, sigma), nil
	}
	return nil, errors.Errorf("regularizers.FromContext: unknown %s %q: valid values are none|flooding|iflood|softad",
		ParamFloodMethod, method)
}
