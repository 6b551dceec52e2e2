// Package deps pins the project's third-party modules while the packages
// that use them are being written, so that concurrent work shares one go.mod.
// It is removed once every dependency has a real importer.
package deps

import (
	_ "github.com/andybalholm/brotli"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	_ "github.com/go-json-experiment/json/jsontext"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/open-policy-agent/opa/v1/rego"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/health"
	_ "gopkg.in/yaml.v3"
	_ "sigs.k8s.io/yaml"
)
