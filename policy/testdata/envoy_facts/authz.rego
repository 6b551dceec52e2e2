# An opa-envoy-plugin style entry point that reads only gdprgate's facts:
# its decisions are memoised like the default policy's.
package envoy.authz

default allow := false

allow if "agent" in input.gdpr.caller.roles
