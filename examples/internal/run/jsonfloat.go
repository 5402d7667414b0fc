package run

import (
	"encoding/json"
	"math"
	"strconv"
)

// A run that diverges has non-finite losses (and a curvature or a gradient norm that overflowed), which
// encoding/json refuses to write: without the methods below a diverged run would lose its curves, its
// checkpointed curve and the comparison's JSON. Non-finite values are written as the strings "NaN", "+Inf"
// and "-Inf", and read back as such.

// jsonFloat is a float64 written as a JSON number when finite and as "NaN", "+Inf" or "-Inf" otherwise.
type jsonFloat float64

// MarshalJSON implements json.Marshaler.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	x := float64(f)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return json.Marshal(strconv.FormatFloat(x, 'g', -1, 64))
	}
	return json.Marshal(x)
}

// UnmarshalJSON implements json.Unmarshaler: a number, or one of the strings MarshalJSON writes.
func (f *jsonFloat) UnmarshalJSON(data []byte) error {
	var x float64
	if err := json.Unmarshal(data, &x); err == nil {
		*f = jsonFloat(x)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	*f = jsonFloat(x)
	return nil
}

// jsonFloatPtr converts an optional value.
func jsonFloatPtr(x *float64) *jsonFloat {
	if x == nil {
		return nil
	}
	f := jsonFloat(*x)
	return &f
}

// float64Ptr converts an optional value back.
func float64Ptr(f *jsonFloat) *float64 {
	if f == nil {
		return nil
	}
	x := float64(*f)
	return &x
}

// In the JSON types below, the jsonFloat fields (depth 0) shadow the embedded struct's fields of the same
// JSON names (depth 1).

// pointJSON is Point in JSON.
type pointJSON struct {
	*plainPoint
	TrainLoss     jsonFloat  `json:"train_loss"`
	TrainAccuracy jsonFloat  `json:"train_accuracy"`
	TestLoss      jsonFloat  `json:"test_loss"`
	TestAccuracy  jsonFloat  `json:"test_accuracy"`
	GradNorm      *jsonFloat `json:"grad_norm,omitempty"`
	Curvature     *jsonFloat `json:"curvature,omitempty"`
}

type plainPoint Point

// MarshalJSON implements json.Marshaler, writing non-finite values as strings.
func (p Point) MarshalJSON() ([]byte, error) {
	return json.Marshal(pointJSON{(*plainPoint)(&p), jsonFloat(p.TrainLoss), jsonFloat(p.TrainAccuracy),
		jsonFloat(p.TestLoss), jsonFloat(p.TestAccuracy), jsonFloatPtr(p.GradNorm), jsonFloatPtr(p.Curvature)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *Point) UnmarshalJSON(data []byte) error {
	aux := pointJSON{plainPoint: (*plainPoint)(p)}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	p.TrainLoss, p.TrainAccuracy = float64(aux.TrainLoss), float64(aux.TrainAccuracy)
	p.TestLoss, p.TestAccuracy = float64(aux.TestLoss), float64(aux.TestAccuracy)
	p.GradNorm, p.Curvature = float64Ptr(aux.GradNorm), float64Ptr(aux.Curvature)
	return nil
}

// resultJSON is Result in JSON.
type resultJSON struct {
	*plainResult
	TestAccuracy  jsonFloat `json:"test_accuracy"`
	TestLoss      jsonFloat `json:"test_loss"`
	TrainLoss     jsonFloat `json:"train_loss"`
	TrainAccuracy jsonFloat `json:"train_accuracy"`
}

type plainResult Result

// MarshalJSON implements json.Marshaler, writing non-finite values as strings.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{(*plainResult)(&r), jsonFloat(r.TestAccuracy), jsonFloat(r.TestLoss),
		jsonFloat(r.TrainLoss), jsonFloat(r.TrainAccuracy)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (r *Result) UnmarshalJSON(data []byte) error {
	aux := resultJSON{plainResult: (*plainResult)(r)}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	r.TestAccuracy, r.TestLoss = float64(aux.TestAccuracy), float64(aux.TestLoss)
	r.TrainLoss, r.TrainAccuracy = float64(aux.TrainLoss), float64(aux.TrainAccuracy)
	return nil
}

// MarshalJSON implements json.Marshaler, writing non-finite values as strings (the mean loss of a diverged
// run).
func (s Summary) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Mean jsonFloat `json:"mean"`
		Std  jsonFloat `json:"std"`
	}{jsonFloat(s.Mean), jsonFloat(s.Std)})
}

// rowJSON is Row in JSON; its ratios are non-finite when a time is 0.
type rowJSON struct {
	*plainRow
	Relative    jsonFloat `json:"step_time_relative"`
	RelativeCPU jsonFloat `json:"step_cpu_relative"`
}

type plainRow Row

// MarshalJSON implements json.Marshaler, writing non-finite values as strings.
func (r Row) MarshalJSON() ([]byte, error) {
	return json.Marshal(rowJSON{(*plainRow)(&r), jsonFloat(r.Relative), jsonFloat(r.RelativeCPU)})
}
