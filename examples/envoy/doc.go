// Package envoy holds the example Envoy bootstraps (envoy.yaml, and
// envoy-local.yaml for local use without JWTs) that put gdprgate's ext_authz
// and ext_proc services in front of the example CRM. Its tests prove that
// both load as valid Envoy v3 bootstraps, typed extension configs included,
// and that every cluster they name exists.
package envoy
