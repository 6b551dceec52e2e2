// Package rego holds gdprgate's default Rego policy (package gdprgate.authz)
// and its tests. Security teams copy this directory, change it and point
// --policy at the copy; the engine refuses a copy whose tests fail.
package rego

import "embed"

// Default is the default policy: authz.rego and its authz_test.rego.
//
//go:embed *.rego
var Default embed.FS
