// Package helm holds gdprgate's Helm chart (deploy/helm/gdprgate) and its
// test, which renders the chart with Helm's own Go packages for several sets
// of values and decodes every object strictly into the Kubernetes API types.
package helm
