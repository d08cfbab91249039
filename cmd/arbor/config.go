package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// ErrUnknownSetting is wrapped by a ConfigError for a --config key that is
// not a flag of the command.
var ErrUnknownSetting = errors.New("unknown setting (keys are the command's flag names)")

// ConfigError names the --config file and the key a problem is in.
type ConfigError struct {
	Path string // the --config file
	Key  string // the key, empty if the file as a whole is bad
	Err  error
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("config %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("config %s: %q: %v", e.Path, e.Key, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// addConfigFlag registers --config on fs.
func addConfigFlag(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML file with settings (keys are the flag names, e.g. \"log-level: debug\"); a flag given on the command line wins")
}

// applyConfigFile loads --config and sets every flag the command line left
// unset. The file is a YAML mapping whose keys are flag names: a key that is
// not one of fs's flags (a typo, or a flag of another command) is refused
// rather than ignored, since a setting silently dropped is a production
// deployment running with a default nobody chose. Values are scalars, or
// lists for list flags.
func applyConfigFile(fs *pflag.FlagSet) error {
	path, _ := fs.GetString("config")
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return &ConfigError{Path: path, Err: err}
	}
	for k, v := range m {
		fl := fs.Lookup(k)
		if fl == nil || k == "config" {
			return &ConfigError{Path: path, Key: k, Err: ErrUnknownSetting}
		}
		if fl.Changed {
			continue
		}
		var val string
		switch v := v.(type) {
		case nil:
			return &ConfigError{Path: path, Key: k, Err: errors.New("no value (leave the key out for the default)")}
		case map[string]any:
			return &ConfigError{Path: path, Key: k, Err: errors.New("a mapping, want a scalar or a list")}
		case []any:
			// A YAML list (snapshot-source: [a, b]) sets a list flag.
			parts := make([]string, len(v))
			for i, e := range v {
				parts[i] = fmt.Sprint(e)
			}
			val = strings.Join(parts, ",")
		default:
			val = fmt.Sprint(v)
		}
		if err := fs.Set(k, val); err != nil {
			return &ConfigError{Path: path, Key: k, Err: err}
		}
	}
	return nil
}
