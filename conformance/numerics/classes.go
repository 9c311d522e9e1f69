package numerics

import "strings"

// BoundClass names the kind of bound a check is judged by. The tightness
// self-tests (tightness_test.go) and the numerics report's headroom table
// are kept per class, because each class is derived differently and can
// go slack on its own:
//
//	op forward, op backward   per element, floating-point error analysis of the op
//	bitlinear forward/backward per element, error analysis plus the flip allowance
//	loss                      the cross-entropy of the golden logits, one scalar
//	exact                     the embedding lookup: the output must equal the golden one
//	end to end                relative L2 within EndToEndSpreadFactor × the spread
type BoundClass string

const (
	ClassOpForward         BoundClass = "op forward"
	ClassOpBackward        BoundClass = "op backward"
	ClassBitLinearForward  BoundClass = "bitlinear forward"
	ClassBitLinearBackward BoundClass = "bitlinear backward"
	ClassLoss              BoundClass = "loss"
	ClassExact             BoundClass = "exact"
	ClassEndToEnd          BoundClass = "end to end"
)

// BoundClasses lists every class, in the order reports show them.
var BoundClasses = []BoundClass{ClassOpForward, ClassBitLinearForward, ClassLoss, ClassExact, ClassOpBackward, ClassBitLinearBackward, ClassEndToEnd}

// Class is the bound class of the check.
func (c Check) Class() BoundClass {
	bitLinear := strings.Contains(c.Op, "BitLinear")
	switch {
	case c.Stage == StageEndToEnd:
		return ClassEndToEnd
	case c.Op == "embedding lookup":
		return ClassExact
	case c.Op == "cross-entropy loss":
		return ClassLoss
	case c.Stage == StageBackward && bitLinear:
		return ClassBitLinearBackward
	case c.Stage == StageBackward:
		return ClassOpBackward
	case bitLinear:
		return ClassBitLinearForward
	}
	return ClassOpForward
}
