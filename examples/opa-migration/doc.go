// Package migration is the example of a security team moving from
// opa-envoy-plugin to gdprgate: its policy (policy/, an opa-envoy-plugin
// policy and its tests, built into a bundle), the keys gdprgate's
// --config gains (gdprgate.yaml) and the Envoy bootstrap (envoy.yaml). Its
// tests validate the bootstrap, and run the policy from a signed bundle
// through Envoy emulation in front of the example CRM.
package migration
