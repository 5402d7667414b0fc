package gr

import (
	"math"

	"github.com/pkg/errors"
)

// option is a setting every method has (Every, WarmUp, ZeroWarmUp, Groups, GuardNonFinite, WarnUnstable,
// Exclude): its context key, default, the FromContext hook that applies it and the getter of its effective
// value (Regularized.Params).
type option struct {
	key   string
	def   any
	apply func(c *Config, value any)
	get   func(c *Config) any
}

// options is the table of the options every method has, by context key: FromContext, RegisterParams,
// ParamDefaults and Params read it.
var options = []option{
	newOption(ParamEvery, 1, (*Config).Every, func(c *Config) int { return max(c.sched.every, 1) }),
	newOption(ParamWarmUp, 0, (*Config).WarmUp, func(c *Config) int { return c.warmUpSteps(false) }),
	newOption(ParamZeroWarmUp, 0, (*Config).ZeroWarmUp, func(c *Config) int { return c.warmUpSteps(true) }),
	newOption(ParamGroups, 1, (*Config).Groups, func(c *Config) int { return max(c.groups, 1) }),
	newOption(ParamGuardNonFinite, true, (*Config).GuardNonFinite, (*Config).guardOn),
	newOption(ParamWarnUnstable, true, (*Config).WarnUnstable, func(c *Config) bool { return !c.noStabilityWarning }),
	newOption(ParamExclude, "", (*Config).Exclude, func(c *Config) string { return c.exclude }),
}

// newOption returns the option with context key param and default def: when the context sets param,
// FromContext calls set with its value (set checks the range); get returns the effective value of a Config.
func newOption[T int | bool | string](param string, def T, set func(c *Config, value T) *Config, get func(c *Config) T) option {
	return option{key: param, def: def,
		apply: func(c *Config, value any) {
			// The option's setter checks the range; here only the type.
			h := Hyperparameter{Key: param, Default: def, Min: math.Inf(-1), Max: math.Inf(1)}
			v, err := convertValue(&h, value)
			if err != nil {
				c.setErr(errors.WithMessagef(err, "gr.%s", c.name))
				return
			}
			set(c, v.(T))
		},
		get: func(c *Config) any { return get(c) }}
}

// findOption returns the option with context key key, or nil.
func findOption(key string) *option {
	for i := range options {
		if options[i].key == key {
			return &options[i]
		}
	}
	return nil
}
