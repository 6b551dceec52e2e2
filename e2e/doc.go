// Package e2e holds gdprgate's end-to-end tests: the reference scenario of
// examples/crm/README.md through the real gRPC servers driven by the in-repo Envoy
// emulator (authz/envoytest), backed by a real redis-server and the example
// CRM, and the same cases through `gdprgate proxy` over real HTTP. Both paths
// must give byte-identical bodies.
package e2e
