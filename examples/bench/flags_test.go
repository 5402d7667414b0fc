package main

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"
)

// Every flag is checked before any work, with a message naming it (and, for -only, the valid names).
func TestCheckFlags(t *testing.T) {
	for _, c := range []struct {
		flags map[string]string
		words []string // "" for a valid setting
	}{
		{map[string]string{"rounds": "0"}, []string{"-rounds", "≥ 1", "got 0"}},
		{map[string]string{"warmup": "-1"}, []string{"-warmup"}},
		{map[string]string{"batch": "0"}, []string{"-batch", "got 0"}},
		{map[string]string{"hidden": "-4"}, []string{"-hidden", "got -4"}},
		{map[string]string{"in": "0"}, []string{"-in"}},
		{map[string]string{"depth": "0"}, []string{"-depth", "≥ 1"}},
		{map[string]string{"out": "1"}, []string{"-out", "≥ 2"}},
		{map[string]string{"model": "resnet"}, []string{"-model", "mlp|vit|cnn"}},
		{map[string]string{"model": "cnn"}, nil},
		{map[string]string{"backend": "go,"}, []string{"-backend", "empty backend"}},
		{map[string]string{"backend": "go,xla:cpu"}, nil},
		{map[string]string{"only": "forward"}, []string{"-only", "\"forward\"", "ForwardDifference"}},
		{map[string]string{"only": "ForwardDifference,SAM"}, nil},
		{map[string]string{"soak": "-3"}, []string{"-soak", "got -3"}},
		{map[string]string{"soak_lr": "0"}, []string{"-soak_lr"}},
		{map[string]string{"soak_batch": "0"}, []string{"-soak_batch"}},
		{map[string]string{"soak_hidden": "0"}, []string{"-soak_hidden"}},
		{map[string]string{"soak_methods": "bogus"}, []string{"-soak_methods", "bogus", "forward"}},
		{map[string]string{"soak_methods": "none,forward"}, nil},
		{map[string]string{"gradients": "fast"}, []string{"-gradients", "gomlx|grgrad|both"}},
		{map[string]string{"gradients": "both"}, nil},
		{map[string]string{"gradients": "both", "soak": "5"}, []string{"-gradients=both", "-soak"}},
		{map[string]string{"gradients": "grgrad", "soak": "5"}, nil},
		{map[string]string{"mnist": filepath.Join(t.TempDir(), "nowhere")}, []string{"-mnist", "nowhere"}},
		{map[string]string{"check": "true", "json": "true"}, []string{"-check", "-json"}},
		{map[string]string{"check": "true"}, nil},
		{map[string]string{"rss": "forward"}, []string{"-rss", "\"forward\"", "ForwardDifference"}},
		{map[string]string{"rss": "SAM", "gradients": "both"}, []string{"-rss", "one backend"}},
		{map[string]string{"rss": "base (SGD)"}, nil},
		{map[string]string{}, nil},
	} {
		defaults := map[string]string{}
		for name, value := range c.flags {
			defaults[name] = flag.Lookup(name).DefValue
			if err := flag.Set(name, value); err != nil {
				t.Fatal(err)
			}
		}
		err := checkFlags()
		for name, value := range defaults {
			_ = flag.Set(name, value)
		}
		if c.words == nil {
			if err != nil {
				t.Errorf("%v: %v, want no error", c.flags, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%v: no error", c.flags)
			continue
		}
		for _, w := range c.words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q lacks %q", c.flags, err, w)
			}
		}
	}
}
