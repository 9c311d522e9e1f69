package checkpoint

import (
	"fmt"
	"math"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
)

// fileSource supplies a streamed model's decoder-layer tensors (Streamed)
// from the checkpoint's mapped files, converted exactly as Load converts
// them, and gives back the pages each read touched.
type fileSource struct {
	files   map[string]*tensorfile.File // by file name
	found   map[string]located          // by tensor name
	offline bool                        // linears are packed ternary codes with a weight_scale
	conv    model.ScaleConvention
}

func (s *fileSource) file(name string) (*tensorfile.File, error) {
	loc, ok := s.found[name]
	if !ok {
		return nil, fmt.Errorf("tensor %q: not in the checkpoint", name)
	}
	return s.files[loc.file], nil
}

// Latent reads a tensor's values into dst.
func (s *fileSource) Latent(name string, dst []float32) error {
	f, err := s.file(name)
	if err != nil {
		return err
	}
	if err := f.ReadFloat32(name, dst); err != nil {
		return err
	}
	f.Evict(name)
	return nil
}

// Offline reads an offline linear's codes and weight_scale.
func (s *fileSource) Offline(name string) (*kernels.Ternary, float32, model.ScaleConvention, bool, error) {
	if !s.offline {
		return nil, 0, 0, false, nil
	}
	f, err := s.file(name)
	if err != nil {
		return nil, 0, 0, false, err
	}
	packed, err := f.Raw(name)
	if err != nil {
		return nil, 0, 0, false, err
	}
	info, _ := f.Info(name)
	rows, cols := 4*int(info.Shape[0]), int(info.Shape[1])
	t, err := kernels.FromHFPacked(packed, rows, cols)
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("%s: tensor %q: %v", f.Path, name, err)
	}
	f.Evict(name)
	scale, err := s.scale(name)
	if err != nil {
		return nil, 0, 0, false, err
	}
	return t, scale, s.conv, true, nil
}

// scale reads the weight_scale of an offline linear.
func (s *fileSource) scale(weight string) (float32, error) {
	name := scaleName(weight)
	f, err := s.file(name)
	if err != nil {
		return 0, err
	}
	v, err := f.Float32(name)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// checkScales checks every layer linear's weight_scale at Load, as
// model.SetOffline checks those of a resident load.
func (s *fileSource) checkScales(cfg model.Config) error {
	if !s.offline {
		return nil
	}
	for _, spec := range cfg.Inventory() {
		if spec.Layer < 0 || spec.Kind != model.KindLinear {
			continue
		}
		v, err := s.scale(spec.Name)
		if err != nil {
			return err
		}
		if !(v > 0) || math.IsInf(float64(v), 0) {
			f, _ := s.file(scaleName(spec.Name))
			return fmt.Errorf("%s: tensor %q: %s: weight_scale: expected a finite positive number, got %v", f.Path, scaleName(spec.Name), spec.Name, v)
		}
	}
	return nil
}
