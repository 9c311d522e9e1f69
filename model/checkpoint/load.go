package checkpoint

import (
	"fmt"
	"path/filepath"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
)

// Option configures Load.
type Option func(*loadOptions)

type loadOptions struct {
	storage model.Storage
}

// WithStorage chooses how the loaded model holds its latent parameters
// (model.StorageAuto by default). A bf16 checkpoint loses nothing under
// model.StorageBF16.
func WithStorage(s model.Storage) Option {
	return func(o *loadOptions) { o.storage = s }
}

// Load builds a model from a checkpoint folder in either layout, single-file
// or sharded. The folder is first inspected against its own config.json, and
// any problem is an error listing every tensor at fault. Files are
// memory-mapped and each tensor is converted once into the model's storage;
// offline linears become ternary weights with their weight_scale, which
// multiplies or divides as quantization_config.linear_class says
// (model.SetOffline; an absent linear_class is HF's default, bitlinear).
func Load(dir string, opts ...Option) (*model.Model, error) {
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := model.LoadConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	r, lay, found, err := inspect(dir, cfg)
	if err != nil {
		return nil, err
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	// Every parameter is overwritten below, so skip the random fill.
	m, err := model.New(cfg, model.Options{Storage: o.storage, Zero: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	files := make(map[string]*tensorfile.File, len(lay.files))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, name := range lay.files {
		f, err := tensorfile.Open(lay.path(name))
		if err != nil {
			return nil, err
		}
		files[name] = f
	}
	conv, err := cfg.ScaleConvention()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	for _, p := range m.Params() {
		spec := p.Spec()
		f := files[found[spec.Name].file]
		if r.Mode == Offline && spec.Kind == model.KindLinear {
			if err := loadTernary(m, p, f, files[found[scaleName(spec.Name)].file], conv); err != nil {
				return nil, err
			}
			continue
		}
		values, err := f.Float32(spec.Name)
		if err != nil {
			return nil, err
		}
		if err := p.Set(values); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %v", f.Path, spec.Name, err)
		}
	}
	return m, nil
}

// loadTernary unpacks an offline linear weight [out/4, in] and its
// weight_scale [1] into the model.
func loadTernary(m *model.Model, p *model.Param, weights, scales *tensorfile.File, conv model.ScaleConvention) error {
	name := p.Name()
	shape := p.Shape()
	packed, err := weights.Raw(name)
	if err != nil {
		return err
	}
	t, err := kernels.FromHFPacked(packed, shape[0], shape[1])
	if err != nil {
		return fmt.Errorf("%s: tensor %q: %v", weights.Path, name, err)
	}
	scale, err := scales.Float32(scaleName(name))
	if err != nil {
		return err
	}
	if err := m.SetOffline(name, t, scale[0], conv); err != nil {
		return fmt.Errorf("%s: tensor %q: %v", scales.Path, scaleName(name), err)
	}
	return nil
}
