// Package binpages gives back the pages of the executable that start-up
// touched (package initialisation, the policy's compilation, the seeds)
// and serving may never touch again.
//
// A Go binary's code and read-only data are file-backed: a page is in the
// process's resident set once it has been read, and stays there although
// the kernel could drop it and read it again from the page cache. gdprgate's
// start-up reads most of its 75 MB binary (protobuf descriptors registered
// at init, OPA's builtins, the Rego compiler) — about 40 MiB of its 56 MiB
// resident set when idle — while an exchange needs a fraction of it.
package binpages

import "errors"

// ErrUnsupported is returned where the platform offers no way to do it.
var ErrUnsupported = errors.New("binpages: not supported on this platform")
