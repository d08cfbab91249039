//go:build !linux

package wan

import "errors"

func inNamespace(string, func() error) error { return errors.ErrUnsupported }
