package checkpoint

import (
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
)

// Option configures Load.
type Option func(*loadOptions)

type loadOptions struct {
	storage  model.Storage
	streamed bool
}

// WithStorage chooses how the loaded model holds its latent parameters
// (model.StorageAuto by default). A bf16 checkpoint loses nothing under
// model.StorageBF16.
func WithStorage(s model.Storage) Option {
	return func(o *loadOptions) { o.storage = s }
}

// Streamed loads the decoder layers lazily: the model keeps the files
// mapped and reads each layer's tensors from them whenever the layer runs,
// giving back the pages it read (model.Options.Source), so that memory grows
// with one layer and not with the checkpoint. Results are bit-identical to
// the resident model's. The layout, every dtype and shape and every
// weight_scale are checked at Load; ternary codes are checked when their
// layer first runs, and a bad code is then that call's error.
func Streamed() Option {
	return func(o *loadOptions) { o.streamed = true }
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
	files, err := openFiles(lay)
	if err != nil {
		return nil, err
	}
	conv, err := cfg.ScaleConvention()
	if err != nil {
		closeFiles(files)
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	// Every parameter is overwritten below, so skip the random fill.
	mopts := model.Options{Storage: o.storage, Zero: true}
	if o.streamed {
		src := &fileSource{files: files, found: found, offline: r.Mode == Offline, conv: conv}
		if err := src.checkScales(cfg); err != nil {
			closeFiles(files)
			return nil, err
		}
		// The model holds the source, which holds the mappings: they go
		// when the model does.
		runtime.AddCleanup(src, closeFiles, files)
		mopts = model.Options{Storage: o.storage, Streamed: true, Source: src}
	} else {
		defer closeFiles(files)
	}
	m, err := model.New(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	for _, p := range m.Params() {
		spec := p.Spec()
		if o.streamed && spec.Layer >= 0 {
			continue
		}
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
		f.Evict(spec.Name)
		if err := p.Set(values); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %v", f.Path, spec.Name, err)
		}
	}
	return m, nil
}

// openFiles maps every file of the layout, by file name.
func openFiles(lay *layout) (map[string]*tensorfile.File, error) {
	files := make(map[string]*tensorfile.File, len(lay.files))
	for _, name := range lay.files {
		f, err := tensorfile.Open(lay.path(name))
		if err != nil {
			closeFiles(files)
			return nil, err
		}
		files[name] = f
	}
	return files, nil
}

func closeFiles(files map[string]*tensorfile.File) {
	for _, f := range files {
		f.Close()
	}
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
	weights.Evict(name)
	scale, err := scales.Float32(scaleName(name))
	if err != nil {
		return err
	}
	if err := m.SetOffline(name, t, scale[0], conv); err != nil {
		return fmt.Errorf("%s: tensor %q: %v", scales.Path, scaleName(name), err)
	}
	return nil
}
