// Package kubernetes holds an example Kubernetes manifest (gdprgate-crm.yaml):
// the example CRM with Envoy and gdprgate sidecars, and Redis with AOF
// persistence. Its tests check that the documents parse and are internally
// consistent (probe ports, volumes, service targets, the Envoy bootstrap).
package kubernetes
