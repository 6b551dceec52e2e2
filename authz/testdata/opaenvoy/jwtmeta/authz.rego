# The primer's "JWT payload passed from Envoy": jwt_authn verified the
# token and put its payload into the dynamic metadata (payload_in_metadata),
# which ext_authz forwards in metadata_context.
package envoy.authz

default allow := false

verified := input.attributes.metadataContext.filterMetadata["envoy.filters.http.jwt_authn"].verified_jwt

allow if endswith(verified.email, "@example.com")
