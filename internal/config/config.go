// Package config is gdprgate's one typed configuration: listeners, store,
// policy, identity, the route map, redaction, body handling, wipes and
// admin tokens. It is loaded from the --config YAML file, overridden by flags
// and GDPRGATE_* environment variables, and validated in one place (Load).
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gdprgate/gdprgate/internal/identity"
	"github.com/gdprgate/gdprgate/internal/opa"
	"github.com/gdprgate/gdprgate/internal/yamlfile"
	"github.com/gdprgate/gdprgate/policy"
	"github.com/gdprgate/gdprgate/policy/model"
	"github.com/gdprgate/gdprgate/redact"
)

// Config is the whole configuration.
type Config struct {
	GRPCAddr      string `yaml:"grpc_addr"`
	AdminAddr     string `yaml:"admin_addr"`
	HTTPAuthzAddr string `yaml:"http_authz_addr"`
	Listen        string `yaml:"listen"`
	Upstream      string `yaml:"upstream"`
	RedisURL      string `yaml:"redis_url"`
	PolicyDir     string `yaml:"policy_dir"`
	Seed          string `yaml:"seed"`

	Policy  PolicyConfig  `yaml:"policy"`
	Tracing TracingConfig `yaml:"tracing"`
	// OPA is OPA's own configuration (services, keys, labels, bundles,
	// decision_logs, status), run by OPA's plugins inside gdprgate.
	OPA      map[string]any `yaml:"opa"`
	Store    StoreConfig    `yaml:"store"`
	Identity IdentityConfig `yaml:"identity"`
	Routes   []Route        `yaml:"routes"`
	Unmapped string         `yaml:"unmapped"` // allow (default) or deny
	// Mode is enforce (default) or shadow: decide, redact in a dry run and
	// log what would have happened, but let requests and bodies through.
	// A route's own mode overrides it.
	Mode        string          `yaml:"mode"`
	Redaction   RedactionConfig `yaml:"redaction"`
	Body        BodyConfig      `yaml:"body"`
	Wipes       WipesConfig     `yaml:"wipes"`
	Erasure     ErasureConfig   `yaml:"erasure"`
	Lifecycle   LifecycleConfig `yaml:"lifecycle"`
	Audit       AuditConfig     `yaml:"audit"`
	Admin       AdminConfig     `yaml:"admin"`
	Decisions   DecisionConfig  `yaml:"decisions"`
	Limits      LimitsConfig    `yaml:"limits"`
	Listeners   ListenersConfig `yaml:"listeners"`
	Proxy       ProxyConfig     `yaml:"proxy"`
	FailOpen    bool            `yaml:"fail_open"`
	HashKeyEnv  string          `yaml:"hash_key_env"`
	LogLevel    string          `yaml:"log_level"`
	PolicyWatch time.Duration   `yaml:"policy_watch"`
	// PolicyAllowUntested lets a policy directory without a passing test_
	// rule load (at start and on reload); refused by default.
	PolicyAllowUntested bool `yaml:"policy_allow_untested"`

	// HashKey is read from the environment variable named by HashKeyEnv.
	HashKey []byte `yaml:"-"`
}

// Modes.
const (
	ModeEnforce = "enforce"
	ModeShadow  = "shadow"
)

// PolicyConfig says which rule decides.
type PolicyConfig struct {
	// Path is the decision entry point, slash-separated under data as
	// opa-envoy-plugin's path ("envoy/authz/allow"); empty: the GDPR
	// decision gdprgate/authz/decision.
	Path string `yaml:"path"`
}

// TracingConfig turns OpenTelemetry tracing on; where spans go is set by
// the standard OTEL_* environment variables.
type TracingConfig struct {
	// Enabled turns tracing on (OTEL_TRACES_EXPORTER=otlp does too).
	Enabled bool `yaml:"enabled"`
}

// StoreConfig tunes the store and its local cache.
type StoreConfig struct {
	MaxSubjects int `yaml:"max_subjects"`
	// MaxCacheBytes bounds the local cache's memory (subject ids are the
	// caller's choice, so entries are counted by size too).
	MaxCacheBytes int64         `yaml:"max_cache_bytes"`
	MaxStaleness  time.Duration `yaml:"max_staleness"`
	// WaitReplicas makes a Redis write count as done only once that many
	// replicas confirmed it (Redis WAIT, bounded by WaitTimeout): the
	// writes that must survive a failover (evidence, wipes, registers).
	WaitReplicas int           `yaml:"wait_replicas"`
	WaitTimeout  time.Duration `yaml:"wait_timeout"`
	// Buckets per shard tag when the Redis store is created (sizing).
	Buckets int `yaml:"buckets"`
	// Timeout bounds the decisions' store calls (then they fail closed);
	// WriteTimeout bounds writes, seeds, imports and admin reads (default
	// the larger of 5s and Timeout): a busy Redis delays them, not fails them.
	Timeout      time.Duration `yaml:"timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// IdentityConfig says where callers' roles come from.
type IdentityConfig struct {
	RolesHeader      string     `yaml:"roles_header"`
	TrustRolesHeader *bool      `yaml:"trust_roles_header"`
	CallerHeader     string     `yaml:"caller_header"`
	ModeHeader       string     `yaml:"mode_header"`    // archive mode: value "archive"
	ProjectHeader    string     `yaml:"project_header"` // project of an outbound communication
	JWT              *JWTConfig `yaml:"jwt"`
	// EnvoyJWT takes the identity from Envoy's jwt_authn metadata.
	EnvoyJWT *EnvoyJWTConfig `yaml:"envoy_jwt"`
	// TrustedSources are the peers (CIDRs or addresses) whose identity
	// headers (roles, caller, project) gdprgate proxy believes; from any
	// other peer they are ignored. Empty: loopback only.
	TrustedSources []string `yaml:"trusted_sources"`
}

// TrustedPrefixes returns TrustedSources parsed (Validate has checked
// them), or loopback when none are set.
func (ic IdentityConfig) TrustedPrefixes() []netip.Prefix {
	if len(ic.TrustedSources) == 0 {
		return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	out := make([]netip.Prefix, 0, len(ic.TrustedSources))
	for _, s := range ic.TrustedSources {
		if p, err := parseSource(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseSource reads a CIDR or a single address.
func parseSource(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// JWTConfig configures bearer JWTs verified by gdprgate itself.
type JWTConfig struct {
	Header         string   `yaml:"header"`
	HS256SecretEnv string   `yaml:"hs256_secret_env"`
	PublicKeyFiles []string `yaml:"public_key_files"`
	JWKSFile       string   `yaml:"jwks_file"`
	Audience       string   `yaml:"audience"`
	Issuer         string   `yaml:"issuer"`
	RolesClaim     string   `yaml:"roles_claim"`
	SubjectClaim   string   `yaml:"subject_claim"`
	// ProjectClaim names a claim holding the caller's project (for
	// same_project legalisations); empty: none.
	ProjectClaim string        `yaml:"project_claim"`
	Leeway       time.Duration `yaml:"leeway"`
	// JWKSURLs are IdPs' JWKS documents (https, http only on loopback),
	// fetched and cached; refetched between JWKSMinRefresh (default 5m)
	// and JWKSMaxRefresh (1h), and on a token naming an unknown kid at
	// most every JWKSUnknownKidRefresh (30s).
	JWKSURLs              []string      `yaml:"jwks_urls"`
	JWKSMinRefresh        time.Duration `yaml:"jwks_min_refresh"`
	JWKSMaxRefresh        time.Duration `yaml:"jwks_max_refresh"`
	JWKSUnknownKidRefresh time.Duration `yaml:"jwks_unknown_kid_refresh"`
}

// EnvoyJWTConfig reads the caller from the JWT payload Envoy's jwt_authn
// filter verified (payload_in_metadata), passed in metadata_context.
type EnvoyJWTConfig struct {
	// Namespace defaults to envoy.filters.http.jwt_authn.
	Namespace string `yaml:"namespace"`
	// PayloadKey is the provider's payload_in_metadata (required).
	PayloadKey   string `yaml:"payload_key"`
	RolesClaim   string `yaml:"roles_claim"`
	SubjectClaim string `yaml:"subject_claim"`
}

// Subject sources.
const (
	FromPath         = "path"          // a {param} of the path template
	FromQuery        = "query"         // a query parameter
	FromHeader       = "header"        // a request header
	FromBody         = "body"          // a JSON field of the request body
	FromResponseBody = "response_body" // a JSON field of the response body
	FromItem         = "item"          // a field of each list item of the response ("data.#.id")
)

// SubjectSpec says where a route's data subject id is.
type SubjectSpec struct {
	Entity string `yaml:"entity"`
	From   string `yaml:"from"`
	// Name is the path parameter, query parameter or header name.
	Name string `yaml:"name"`
	// Path is the JSON path for body, response_body and item sources.
	Path string `yaml:"path"`
	// OriginFrom is the JSON path of the response body where the backend
	// says when it created the subject's data (e.g. created_at; for item
	// subjects relative to the list, e.g. data.#.created_at). The first
	// time gdprgate meets the subject it records that instant as the
	// data's origin instead of "now".
	OriginFrom string `yaml:"origin_from"`
	// Confirm is the JSON path of the answer where the backend states the
	// id of the subject it answered about (e.g. id; data.#.contact_id when
	// every item of a list states it), for subjects read from the request.
	// A backend may find a record under another spelling of its id (case,
	// a format suffix, leading zeros, an e-mail): when the answer's id
	// differs from the request's, the answer is judged for both subjects
	// and shows only what both allow; a denial of the answer's subject
	// replaces the answer. A 2xx JSON answer without it is refused (502).
	Confirm string `yaml:"confirm"`
	// IDPattern is a regular expression (Go syntax, matched against the
	// whole id) that ids read from the request must match, else 400: the
	// backend's canonical spelling of its ids. It guards what the answer
	// cannot: writes and outbound calls act before they answer.
	IDPattern string `yaml:"id_pattern"`
}

// IDRegexp compiles IDPattern anchored at both ends (nil when unset).
func (s *SubjectSpec) IDRegexp() (*regexp.Regexp, error) {
	if s == nil || s.IDPattern == "" {
		return nil, nil
	}
	re, err := regexp.Compile(`\A(?:` + s.IDPattern + `)\z`)
	if err != nil {
		return nil, fmt.Errorf("id_pattern: %w", err)
	}
	return re, nil
}

// Route maps one backend route to what gdprgate must know of it.
type Route struct {
	Name   string `yaml:"name"`
	Method string `yaml:"method"`
	// Path is a template: literal segments and {param} segments.
	Path string `yaml:"path"`
	// Kind is read, list, export, write or outbound.
	Kind string `yaml:"kind"`
	// CommType is the outbound communication type ("campaign_oc"), or
	// CommTypeFrom names a request-body JSON field whose value is mapped
	// through CommTypes ({"campaign": "campaign_oc"}).
	CommType     string            `yaml:"comm_type"`
	CommTypeFrom string            `yaml:"comm_type_from"`
	CommTypes    map[string]string `yaml:"comm_types"`
	Subject      *SubjectSpec      `yaml:"subject"`
	// Fields maps JSON paths of the response body to a sensitivity, by id
	// ("contact") or bit number ("1").
	Fields map[string]string `yaml:"fields"`
	// Actions overrides the redaction action per field path.
	Actions map[string]string `yaml:"actions"`
	// ExactCase matches the JSON keys of Fields (and of body subject paths)
	// byte for byte after unescaping; by default they are matched
	// case-insensitively ("HEALTH_NOTES" like "health_notes").
	ExactCase bool `yaml:"exact_case"`
	// Communication says, for a communication route, where the values the
	// rules table and the evidence need are.
	Communication *CommunicationSpec `yaml:"communication"`
	// Mode overrides the top-level mode for this route ("" inherits).
	Mode string `yaml:"mode"`

	// Line is the route's line in the config file, for error messages.
	Line int `yaml:"-"`
}

// ValueSpec says where a communication route reads one value: from the
// request (path parameter, query parameter, header, JSON body), from the
// backend's JSON answer (response_body, for the new record's id), or a
// constant (value). values maps what was read to what the rules compare
// ({inbound: InboundCall}); a value it does not map is unknown.
type ValueSpec struct {
	From   string            `yaml:"from"`
	Name   string            `yaml:"name"`
	Path   string            `yaml:"path"`
	Value  string            `yaml:"value"`
	Values map[string]string `yaml:"values"`
}

// CommunicationSpec is a communication route's reading of the manual's
// rule conditions and of what the evidence it creates needs.
type CommunicationSpec struct {
	// ID is the communication record's id, put in the evidence's comm_ids
	// (usually from: response_body, the record the backend created).
	ID *ValueSpec `yaml:"id"`
	// Phone is the communication's phone number: the subject of the
	// evidence when the registers' identity_entity is phone_number.
	Phone *ValueSpec `yaml:"phone"`
	// Reference fills the evidence's reference.
	Reference *ValueSpec `yaml:"reference"`
	// The rule conditions of the manual's GDPR rules table.
	Channel        *ValueSpec `yaml:"channel"`
	ProjectID      *ValueSpec `yaml:"project_id"`
	LanguageID     *ValueSpec `yaml:"language_id"`
	PhonebookID    *ValueSpec `yaml:"phonebook_id"`
	OutboundListID *ValueSpec `yaml:"outbound_list_id"`
	TopicID        *ValueSpec `yaml:"topic_id"`
	SubtopicID     *ValueSpec `yaml:"subtopic_id"`
	// Renewal is the record's IsRenewal flag (true, "true" or 1): the
	// communication renews the subject's evidence of "implicit" purposes
	// (and of "explicit" ones when the policy allows the caller).
	Renewal *ValueSpec `yaml:"renewal"`
	// AutoRenewal: every communication on this route renews the subject's
	// evidence of "auto" purposes (the manual: "When every IC / OC / M /
	// CH communication record is acquired").
	AutoRenewal bool `yaml:"auto_renewal"`
}

// Conditions lists the rule-condition values by their rule field name.
func (c *CommunicationSpec) Conditions() map[string]*ValueSpec {
	return map[string]*ValueSpec{
		"channel": c.Channel, "project_id": c.ProjectID, "language_id": c.LanguageID,
		"phonebook_id": c.PhonebookID, "outbound_list_id": c.OutboundListID,
		"topic_id": c.TopicID, "subtopic_id": c.SubtopicID,
	}
}

// values lists every value spec of c by its key.
func (c *CommunicationSpec) values() map[string]*ValueSpec {
	m := c.Conditions()
	m["id"], m["phone"], m["reference"], m["renewal"] = c.ID, c.Phone, c.Reference, c.Renewal
	return m
}

// UnmarshalYAML keeps the route's line number for validation messages.
func (r *Route) UnmarshalYAML(n *yaml.Node) error {
	// Node.Decode does not inherit the decoder's KnownFields: check here.
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if !routeKeys[k.Value] {
				return fmt.Errorf("line %d: field %s not found in type config.Route", k.Line, k.Value)
			}
			if k.Value == "subject" && v.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(v.Content); j += 2 {
					if sk := v.Content[j]; !subjectKeys[sk.Value] {
						return fmt.Errorf("line %d: field %s not found in type config.SubjectSpec", sk.Line, sk.Value)
					}
				}
			}
			if k.Value == "communication" && v.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(v.Content); j += 2 {
					ck, cv := v.Content[j], v.Content[j+1]
					if !communicationKeys[ck.Value] {
						return fmt.Errorf("line %d: field %s not found in type config.CommunicationSpec", ck.Line, ck.Value)
					}
					if cv.Kind != yaml.MappingNode {
						continue
					}
					for m := 0; m+1 < len(cv.Content); m += 2 {
						if vk := cv.Content[m]; !valueKeys[vk.Value] {
							return fmt.Errorf("line %d: field %s not found in type config.ValueSpec", vk.Line, vk.Value)
						}
					}
				}
			}
		}
	}
	type plain Route
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*r = Route(p)
	r.Line = n.Line
	return nil
}

var routeKeys = map[string]bool{
	"name": true, "method": true, "path": true, "kind": true, "comm_type": true, "comm_type_from": true,
	"comm_types": true, "subject": true, "fields": true, "actions": true, "exact_case": true,
	"communication": true, "mode": true,
}

var communicationKeys = map[string]bool{
	"id": true, "phone": true, "reference": true, "channel": true, "project_id": true,
	"language_id": true, "phonebook_id": true, "outbound_list_id": true, "topic_id": true,
	"subtopic_id": true, "renewal": true, "auto_renewal": true,
}

var valueKeys = map[string]bool{"from": true, "name": true, "path": true, "value": true, "values": true}

var subjectKeys = map[string]bool{"entity": true, "from": true, "name": true, "path": true, "origin_from": true,
	"confirm": true, "id_pattern": true}

// RedactionConfig chooses what replaces a hidden field.
type RedactionConfig struct {
	// Default is null (default), remove, mask or hash.
	Default string `yaml:"default"`
	// BySensitivity overrides the action per sensitivity id.
	BySensitivity map[string]string `yaml:"by_sensitivity"`
	Mask          string            `yaml:"mask"`
}

// ProxyConfig tunes `gdprgate proxy`'s connections to the backend.
type ProxyConfig struct {
	// BackendHTTP2 is off (default: HTTP/1.1 to an http:// upstream, HTTP/2
	// over TLS when an https:// one offers it) or h2c: HTTP/2 without TLS
	// to an http:// upstream that speaks it (prior knowledge, no upgrade).
	BackendHTTP2 string `yaml:"backend_http2"`
}

// Backend HTTP/2 settings.
const (
	BackendHTTP2Off = "off"
	BackendHTTP2H2C = "h2c"
)

// BodyConfig says how awkward bodies are treated on mapped routes.
type BodyConfig struct {
	MaxBytes int `yaml:"max_bytes"`
	// NonJSON is fail (default: 502 with a JSON reason) or pass.
	NonJSON string `yaml:"non_json"`
	// Compressed is decode (default: decompress, rewrite, re-encode) or refuse.
	Compressed string `yaml:"compressed"`
	// MaxRequestBytes bounds request bodies read for the subject (outbound)
	// and for the rectification audit (write routes, which refuse larger ones).
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// UnseenAfter is the number of successful JSON answers of a route after
	// which each mapped path that none of them contained is reported once
	// (a metric and a warning): a typo or a backend rename. 0 turns it off.
	UnseenAfter *int `yaml:"unseen_after"`
	// StreamAbove: the proxy buffers a mapped answer up to this many bytes
	// and rewrites it whole; a longer (or chunked) one is rewritten while
	// it streams (default 1 MiB, at most max_bytes; -1 never streams).
	StreamAbove int `yaml:"stream_above"`
	// StreamItemMaxBytes bounds what a streamed rewrite holds at once (a
	// list item until its subject id is read, a mapped value): over it the
	// answer is aborted (default 1 MiB).
	StreamItemMaxBytes int `yaml:"stream_item_max_bytes"`
}

// WipeStep is one backend deletion call of a wipe or an erasure.
type WipeStep struct {
	Name   string `yaml:"name"`
	Method string `yaml:"method"`
	Path   string `yaml:"path"` // with {id}
	Issue  bool   `yaml:"issue"`
	// Body is a JSON body sent with the call (an erasure's PATCH nulling
	// fields); "{id}" inside its strings is replaced by the subject id.
	Body any `yaml:"body"`
}

// ErasureConfig lists the backend calls that delete one sensitivity's data
// of a subject: steps.<entity>.<sensitivity id>.
type ErasureConfig struct {
	Steps map[string]map[string][]WipeStep `yaml:"steps"`
	// Communications are the calls that delete one proof communication
	// ("{id}" = the communication id) once its evidence's retention ended.
	Communications []WipeStep `yaml:"communications"`
}

// AuditConfig bounds the audit trail in the store: entries past the
// retention are exported (file and/or HTTP sink), then trimmed.
type AuditConfig struct {
	Retention AuditRetention `yaml:"retention"`
	Export    AuditExport    `yaml:"export"`
}

// AuditRetention says which entries the store keeps.
type AuditRetention struct {
	// MaxAge: entries older are exported and trimmed (0: no age limit).
	MaxAge time.Duration `yaml:"max_age"`
	// MaxEntries: the oldest entries beyond this count are exported and
	// trimmed (0: no limit).
	MaxEntries int64 `yaml:"max_entries"`
	// Interval between retention passes (default 1m).
	Interval time.Duration `yaml:"interval"`
}

// AuditExport is where entries go before they are trimmed.
type AuditExport struct {
	// File is appended NDJSON (one entry per line, fsynced).
	File string `yaml:"file"`
	// URL receives POSTs of NDJSON; a 2xx answer counts as exported.
	URL string `yaml:"url"`
	// TokenEnv names the environment variable holding a bearer token for URL.
	TokenEnv string `yaml:"token_env"`
}

// Enabled reports whether a retention is configured.
func (a AuditConfig) Enabled() bool { return a.Retention.MaxAge > 0 || a.Retention.MaxEntries > 0 }

// LifecycleConfig tunes the lifecycle executor (internal/forget).
type LifecycleConfig struct {
	// Deletions is hold (default: lifecycle deletions wait for an
	// approval) or auto.
	Deletions string `yaml:"deletions"`
	// MaxDeletionsPerChange refuses a register change that would create
	// more deletions than this unless confirmed (default 100).
	MaxDeletionsPerChange int `yaml:"max_deletions_per_change"`
	// Sweeper runs a sweeper in this process (default true; one is active
	// at a time across sidecars, by a lease in the store).
	Sweeper *bool `yaml:"sweeper"`
	// SweepInterval is how often the sweeper looks for due transitions
	// (default 1s).
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// Batch bounds the subjects processed per store round trip (default
	// 10000: a batch's commit is one script per store shard, so larger
	// batches write more subjects per script).
	Batch int `yaml:"batch"`
	// LeaseTTL is how long a silent sweeper keeps the lease (default 15s).
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// WipesConfig lists, per entity, the backend calls that delete a subject.
type WipesConfig struct {
	Backend   string                `yaml:"backend"`
	Steps     map[string][]WipeStep `yaml:"steps"`
	PerMinute int                   `yaml:"per_minute"`
	Workers   int                   `yaml:"workers"`
}

// AdminToken is a bearer token of the admin API, stored as its SHA-256.
type AdminToken struct {
	Name   string   `yaml:"name"`
	SHA256 string   `yaml:"sha256"`
	Scopes []string `yaml:"scopes"`
}

// AdminConfig secures the admin API.
type AdminConfig struct {
	Tokens       []AdminToken `yaml:"tokens"`
	TLSCert      string       `yaml:"tls_cert"`
	TLSKey       string       `yaml:"tls_key"`
	ClientCA     string       `yaml:"client_ca"` // set: mTLS required
	MaxBodyBytes int64        `yaml:"max_body_bytes"`
	// Console serves the admin console under /ui/ on the admin listener
	// (default false: a listener serves no web page unless asked). It is
	// static files calling the admin API with the operator's token: it adds
	// no API and turning it off removes none.
	Console bool `yaml:"console"`
}

// DecisionConfig tunes the decision log.
type DecisionConfig struct {
	// Sample is the fraction of decisions logged (0..1, default 1).
	Sample *float64 `yaml:"sample"`
	// SubjectInClear logs raw subject ids instead of keyed hashes.
	SubjectInClear bool `yaml:"subject_in_clear"`
	// ClearHeaders are request headers whose values OPA-shaped decision
	// logs keep (x-request-id, say); every other header value is masked.
	ClearHeaders []string `yaml:"clear_headers"`
}

// LimitsConfig bounds what gdprgate accepts from a request.
type LimitsConfig struct {
	// MaxIDBytes bounds a subject id read from a request (path, query,
	// header or body); a longer one is refused with 400. Default 256.
	MaxIDBytes int `yaml:"max_id_bytes"`
	// MemoryLimit is the Go runtime's soft memory limit in bytes
	// (runtime/debug.SetMemoryLimit; the GOMEMLIMIT environment variable's
	// value when 0, no limit when neither is set). The collector works
	// harder as the heap nears it: a sidecar streaming big answers keeps
	// its peak resident memory down at some CPU. It is soft: live memory
	// above it is never refused.
	MemoryLimit int64 `yaml:"memory_limit"`
	// ReleaseBinaryPages is what `serve` and `proxy` give back of their
	// own binary once serving (start-up reads most of it; an exchange
	// needs a fraction): "evict" (default) drops the read-only pages from
	// the resident set and from the page cache, so only pages used later
	// come back, one by one — the lowest resident memory, at about a
	// thousand reads of the binary's file on the first exchanges; "drop"
	// only drops them from the resident set, so they come back from the
	// page cache as it holds them (no file reads, more of the binary
	// resident); "off" gives back nothing but start-up's garbage.
	ReleaseBinaryPages string `yaml:"release_binary_pages"`
}

// The values of limits.release_binary_pages.
const (
	ReleaseEvict = "evict"
	ReleaseDrop  = "drop"
	ReleaseOff   = "off"
)

// Default returns the configuration with every default filled in.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.GRPCAddr, "127.0.0.1:9191")
	def(&c.AdminAddr, "127.0.0.1:9192")
	def(&c.Listen, "127.0.0.1:8080")
	def(&c.Unmapped, "allow")
	def(&c.Proxy.BackendHTTP2, BackendHTTP2Off)
	def(&c.Mode, ModeEnforce)
	def(&c.Identity.RolesHeader, "x-gdpr-roles")
	def(&c.Identity.CallerHeader, "x-gdpr-caller")
	def(&c.Identity.ModeHeader, "x-gdpr-mode")
	def(&c.Identity.ProjectHeader, "x-gdpr-project")
	def(&c.Redaction.Default, "null")
	def(&c.Redaction.Mask, "***")
	def(&c.Body.NonJSON, "fail")
	def(&c.Body.Compressed, "decode")
	def(&c.HashKeyEnv, "GDPRGATE_HASH_KEY")
	def(&c.LogLevel, "info")
	if c.Body.MaxBytes == 0 {
		c.Body.MaxBytes = 8 << 20
	}
	if c.Body.MaxRequestBytes == 0 {
		c.Body.MaxRequestBytes = 64 << 10
	}
	if c.Body.StreamAbove == 0 {
		c.Body.StreamAbove = min(1<<20, c.Body.MaxBytes)
	}
	if c.Body.StreamItemMaxBytes == 0 {
		c.Body.StreamItemMaxBytes = 1 << 20
	}
	if c.Body.UnseenAfter == nil {
		n := 1000
		c.Body.UnseenAfter = &n
	}
	if c.Store.MaxSubjects == 0 {
		c.Store.MaxSubjects = 100000
	}
	if c.Store.MaxCacheBytes == 0 {
		c.Store.MaxCacheBytes = 64 << 20
	}
	if c.Store.MaxStaleness == 0 {
		c.Store.MaxStaleness = 30 * time.Second
	}
	if c.Store.Timeout == 0 {
		c.Store.Timeout = 500 * time.Millisecond
	}
	if c.Wipes.PerMinute == 0 {
		c.Wipes.PerMinute = 10
	}
	if c.Wipes.Workers == 0 {
		c.Wipes.Workers = 1
	}
	def(&c.Lifecycle.Deletions, "hold")
	if c.Lifecycle.MaxDeletionsPerChange == 0 {
		c.Lifecycle.MaxDeletionsPerChange = 100
	}
	if c.Lifecycle.Sweeper == nil {
		on := true
		c.Lifecycle.Sweeper = &on
	}
	if c.Lifecycle.SweepInterval == 0 {
		c.Lifecycle.SweepInterval = time.Second
	}
	if c.Lifecycle.Batch == 0 {
		c.Lifecycle.Batch = 10000
	}
	if c.Lifecycle.LeaseTTL == 0 {
		c.Lifecycle.LeaseTTL = 15 * time.Second
	}
	if c.Admin.MaxBodyBytes == 0 {
		c.Admin.MaxBodyBytes = 1 << 20
	}
	if c.Limits.ReleaseBinaryPages == "" {
		c.Limits.ReleaseBinaryPages = ReleaseEvict
	}
	if c.Limits.MaxIDBytes == 0 {
		c.Limits.MaxIDBytes = 256
	}
	if c.PolicyWatch == 0 {
		c.PolicyWatch = 2 * time.Second
	}
	c.Listeners.applyDefaults()
	if c.Decisions.Sample == nil {
		one := 1.0
		c.Decisions.Sample = &one
	}
}

// Parse decodes a YAML config, rejecting unknown fields, fills defaults and
// validates it. Errors name the line.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	// An empty file is valid: the defaults. Unknown fields are refused with
	// the name probably meant, keys given twice too, each with its line.
	if err := yamlfile.Decode(data, c, yamlfile.Options{Tag: "yaml"}); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads and parses a config file; "" gives the defaults.
func Load(path string) (*Config, error) {
	if path == "" {
		c := Default()
		return c, c.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var (
	paramSeg = regexp.MustCompile(`^\{[A-Za-z_][A-Za-z0-9_]*\}$`)
	actions  = map[string]bool{"null": true, "remove": true, "mask": true, "hash": true}
	kinds    = map[string]bool{policy.KindRead: true, policy.KindList: true, policy.KindExport: true, policy.KindWrite: true, policy.KindOutbound: true, policy.KindCommunication: true}
	methods  = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}
)

// Validate checks the whole configuration and reports every problem with
// the route's line.
func (c *Config) Validate() error {
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	c.Listeners.validate(add)
	if c.Unmapped != "allow" && c.Unmapped != "deny" {
		add("unmapped: must be allow or deny (got %q)", c.Unmapped)
	}
	switch c.Proxy.BackendHTTP2 {
	case BackendHTTP2Off:
	case BackendHTTP2H2C:
		if strings.HasPrefix(strings.ToLower(c.Upstream), "https:") {
			add("proxy.backend_http2: h2c is HTTP/2 without TLS; the upstream %q is https (HTTP/2 over TLS is negotiated by itself)", c.Upstream)
		}
	default:
		add("proxy.backend_http2: must be off or h2c (got %q)", c.Proxy.BackendHTTP2)
	}
	if c.Mode != ModeEnforce && c.Mode != ModeShadow {
		add("mode: must be enforce or shadow (got %q)", c.Mode)
	}
	for i, r := range c.Routes {
		if r.Mode != "" && r.Mode != ModeEnforce && r.Mode != ModeShadow {
			add("routes[%d] (line %d): mode must be enforce or shadow (got %q)", i, r.Line, r.Mode)
		}
	}
	if !actions[c.Redaction.Default] {
		add("redaction.default: must be null, remove, mask or hash (got %q)", c.Redaction.Default)
	}
	for s, a := range c.Redaction.BySensitivity {
		if !actions[a] {
			add("redaction.by_sensitivity.%s: must be null, remove, mask or hash (got %q)", s, a)
		}
	}
	if c.Body.NonJSON != "fail" && c.Body.NonJSON != "pass" {
		add("body.non_json: must be fail or pass (got %q)", c.Body.NonJSON)
	}
	if c.Body.Compressed != "decode" && c.Body.Compressed != "refuse" {
		add("body.compressed: must be decode or refuse (got %q)", c.Body.Compressed)
	}
	if c.Limits.MemoryLimit < 0 {
		add("limits.memory_limit: must be positive or 0 for the runtime's default (got %d)", c.Limits.MemoryLimit)
	}
	switch c.Limits.ReleaseBinaryPages {
	case ReleaseEvict, ReleaseDrop, ReleaseOff:
	default:
		add("limits.release_binary_pages: must be evict, drop or off (got %q)", c.Limits.ReleaseBinaryPages)
	}
	if c.Limits.MaxIDBytes < 0 {
		add("limits.max_id_bytes: must be positive (got %d)", c.Limits.MaxIDBytes)
	}
	if c.Body.StreamAbove < -1 || c.Body.StreamAbove > c.Body.MaxBytes {
		add("body.stream_above: must be -1 (never stream) or a size up to body.max_bytes (got %d)", c.Body.StreamAbove)
	}
	if c.Body.StreamItemMaxBytes < 0 {
		add("body.stream_item_max_bytes: must be positive (got %d)", c.Body.StreamItemMaxBytes)
	}
	if c.Body.UnseenAfter != nil && *c.Body.UnseenAfter < 0 {
		add("body.unseen_after: must be 0 (off) or a number of answers")
	}
	if c.Decisions.Sample != nil && (*c.Decisions.Sample < 0 || *c.Decisions.Sample > 1) {
		add("decisions.sample: must be between 0 and 1")
	}
	if c.Store.MaxSubjects < 0 {
		add("store.max_subjects: must be positive (got %d)", c.Store.MaxSubjects)
	}
	if c.Store.MaxCacheBytes < 0 {
		add("store.max_cache_bytes: must be positive (got %d)", c.Store.MaxCacheBytes)
	}
	if c.Store.MaxStaleness < 0 || c.Store.Timeout < 0 || c.Store.WaitTimeout < 0 || c.Store.WriteTimeout < 0 {
		add("store.max_staleness, store.timeout, store.write_timeout, store.wait_timeout: must be positive durations")
	}
	if c.Audit.Retention.MaxAge < 0 || c.Audit.Retention.MaxEntries < 0 || c.Audit.Retention.Interval < 0 {
		add("audit.retention: max_age, max_entries and interval must be positive")
	}
	if c.Audit.Enabled() && c.Audit.Export.File == "" && c.Audit.Export.URL == "" {
		add("audit.retention: entries are exported before they are trimmed: set audit.export.file or audit.export.url")
	}
	if u := c.Audit.Export.URL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			add("audit.export.url: must be an http(s) URL (got %q)", u)
		}
	}
	if c.Store.WaitReplicas < 0 || c.Store.WaitReplicas > 16 {
		add("store.wait_replicas: must be 0..16 (got %d)", c.Store.WaitReplicas)
	}
	if c.Store.Buckets < 0 || c.Store.Buckets > 1<<20 {
		add("store.buckets: must be 1..1048576 (got %d)", c.Store.Buckets)
	}
	if j := c.Identity.JWT; j != nil {
		for _, u := range j.JWKSURLs {
			if err := identity.CheckJWKSURL(u); err != nil {
				add("identity.jwt.jwks_urls: %v", err)
			}
		}
		if j.JWKSMinRefresh < 0 || j.JWKSMaxRefresh < 0 || j.JWKSUnknownKidRefresh < 0 {
			add("identity.jwt.jwks_*_refresh: must be positive durations")
		}
	}
	if e := c.Identity.EnvoyJWT; e != nil && strings.TrimSpace(e.PayloadKey) == "" {
		add("identity.envoy_jwt.payload_key: required (jwt_authn's payload_in_metadata)")
	}
	if err := opa.Validate(c.OPA); err != nil {
		add("opa: %v", err)
	} else if _, bundles := c.OPA["bundles"]; bundles && c.PolicyDir != "" {
		add("opa.bundles and policy_dir (--policy) both give the policy: choose one")
	}
	if _, err := policy.PathRef(c.Policy.Path); err != nil {
		add("policy.path: %v", err)
	}
	if c.Upstream != "" {
		if u, err := url.Parse(c.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("upstream: must be an http(s) URL (got %q)", c.Upstream)
		}
	}
	seen := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		where := fmt.Sprintf("routes[%d] (line %d)", i, r.Line)
		if r.Name == "" {
			r.Name = fmt.Sprintf("%s %s", r.Method, r.Path)
		}
		r.Method = strings.ToUpper(r.Method)
		if !methods[r.Method] {
			add("%s: method must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (got %q)", where, r.Method)
		}
		params := map[string]bool{}
		if !strings.HasPrefix(r.Path, "/") {
			add("%s: path must start with / (got %q)", where, r.Path)
		} else {
			for _, seg := range strings.Split(strings.Trim(r.Path, "/"), "/") {
				switch {
				case strings.ContainsAny(seg, "{}"):
					if !paramSeg.MatchString(seg) {
						add("%s: path segment %q: a parameter must be a whole segment like {id}", where, seg)
					} else {
						params[seg[1:len(seg)-1]] = true
					}
				case seg == "" && r.Path != "/", seg == ".", seg == "..", strings.ContainsAny(seg, "%;\\?#"):
					// Requests are matched on their canonical path
					// (decoded, no empty, dot or ;param segments): a
					// template segment that has no canonical form would
					// never match.
					add("%s: path segment %q: write literal segments decoded, without ;params, dot segments, empty segments, %%, \\, ? or #", where, seg)
				}
			}
		}
		key := r.Method + " " + templateKey(r.Path)
		if j, dup := seen[key]; dup {
			add("%s: same method and path as routes[%d]", where, j)
		}
		seen[key] = i
		if !kinds[r.Kind] {
			add("%s: kind must be read, list, export, write, outbound or communication (got %q)", where, r.Kind)
		}
		if r.Kind == policy.KindOutbound {
			switch {
			case r.CommType != "" && r.CommTypeFrom != "":
				add("%s: give comm_type or comm_type_from, not both", where)
			case r.CommType != "":
				if _, ok := model.CommTypes[r.CommType]; !ok {
					add("%s: comm_type %q is not a communication type (%s)", where, r.CommType, commTypeNames())
				}
			case r.CommTypeFrom != "":
				if len(r.CommTypes) == 0 {
					add("%s: comm_type_from needs comm_types mapping body values to communication types", where)
				}
				for v, ct := range r.CommTypes {
					if _, ok := model.CommTypes[ct]; !ok {
						add("%s: comm_types.%s: %q is not a communication type (%s)", where, v, ct, commTypeNames())
					}
				}
			default:
				add("%s: an outbound route needs comm_type or comm_type_from", where)
			}
		}
		if s := r.Subject; s != nil {
			if s.Entity == "" {
				add("%s: subject.entity is required", where)
			}
			switch s.From {
			case FromPath:
				if !params[s.Name] {
					add("%s: subject.name %q is not a {parameter} of the path", where, s.Name)
				}
			case FromQuery, FromHeader:
				if s.Name == "" {
					add("%s: subject.name is required for from: %s", where, s.From)
				}
			case FromBody, FromResponseBody:
				if err := bodyPath(s.Path, 0); err != nil {
					add("%s: subject.path: %v", where, err)
				}
			case FromItem:
				if err := bodyPath(s.Path, 1); err != nil {
					add("%s: subject.path: %v", where, err)
				}
			default:
				add("%s: subject.from must be path, query, header, body, response_body or item (got %q)", where, s.From)
			}
			if o := s.OriginFrom; o != "" {
				// The origin is read from the answer: for item subjects one
				// per element of the same list as the id.
				prefix, _, _ := strings.Cut(s.Path, "#")
				each := 0
				if s.From == FromItem {
					each = 1
				}
				switch err := bodyPath(o, each); {
				case err != nil:
					add("%s: subject.origin_from: %v", where, err)
				case s.From == FromItem && (!strings.HasPrefix(o, prefix+"#.") || strings.ContainsAny(o, "\\|@")):
					// Items pair the id and the origin by plain dotted keys.
					add("%s: subject.origin_from %q must be a plain path in the same list as subject.path %q (e.g. %s#.created_at)", where, o, s.Path, prefix)
				}
			}
			requestSide := s.From == FromPath || s.From == FromQuery || s.From == FromHeader || s.From == FromBody
			if c := s.Confirm; c != "" {
				// The answer states whom it is about: one value, or one per
				// element of a list (every item states it).
				switch err := bodyPath(c, strings.Count(c, "#")); {
				case !requestSide:
					add("%s: subject.confirm is for subjects read from the request (path, query, header, body); from: %s already reads the answer", where, s.From)
				case r.Kind == policy.KindOutbound:
					add("%s: subject.confirm: an outbound route acts before it answers; guard its ids with subject.id_pattern", where)
				case strings.Count(c, "#") > 1:
					add("%s: subject.confirm %q: at most one # (every item of one list)", where, c)
				case err != nil:
					add("%s: subject.confirm: %v", where, err)
				}
			}
			if s.IDPattern != "" {
				if !requestSide {
					add("%s: subject.id_pattern is for subjects read from the request (path, query, header, body)", where)
				} else if _, err := s.IDRegexp(); err != nil {
					add("%s: subject.%v", where, err)
				}
			}
		} else if r.Kind != policy.KindWrite && len(r.Fields) > 0 {
			add("%s: a route with fields needs a subject", where)
		}
		if r.Kind == policy.KindOutbound && (r.Subject == nil || r.Subject.From == FromResponseBody || r.Subject.From == FromItem) {
			add("%s: an outbound route's subject must come from the request (path, query, header or body)", where)
		}
		if r.Kind == policy.KindCommunication && (r.Subject == nil || r.Subject.From == FromResponseBody || r.Subject.From == FromItem) {
			add("%s: a communication route's subject must come from the request (path, query, header or body)", where)
		}
		switch {
		case r.Kind == policy.KindCommunication && r.Communication == nil:
			add("%s: a communication route needs communication: {id: …} (where the new record's id is)", where)
		case r.Kind != policy.KindCommunication && r.Communication != nil:
			add("%s: communication: is for kind: communication only", where)
		case r.Communication != nil:
			validateCommunication(r.Communication, params, func(format string, args ...any) {
				add("%s: communication.%s", where, fmt.Sprintf(format, args...))
			})
		}
		if r.CommTypeFrom != "" {
			if err := bodyPath(r.CommTypeFrom, 0); err != nil {
				add("%s: comm_type_from: %v", where, err)
			}
		}
		fieldsOK := true
		for _, p := range sortedKeys(r.Fields) {
			if _, err := redact.ParsePath(p); err != nil {
				add("%s: fields: %v", where, err)
				fieldsOK = false
			}
		}
		if fieldsOK && len(r.Fields) > 0 {
			// How the paths fit together (under the subject's array, not
			// hiding the subject) is the rewriter's to say: compile them.
			spec := redact.Spec{ExactCase: r.ExactCase, HashKey: []byte("check")}
			subjectOK := true
			if s := r.Subject; s != nil && (s.From == FromItem || s.From == FromResponseBody) {
				spec.SubjectPath = s.Path
				subjectOK = bodyPath(s.Path, strings.Count(s.Path, "#")) == nil // else reported above
			} else if s != nil && s.Confirm != "" {
				// The confirming id is read like a response subject: no
				// field may hide it, and with a # every field is an item's.
				spec.SubjectPath = s.Confirm
				subjectOK = strings.Count(s.Confirm, "#") <= 1 && bodyPath(s.Confirm, strings.Count(s.Confirm, "#")) == nil
			}
			for _, p := range sortedKeys(r.Fields) {
				spec.Fields = append(spec.Fields, redact.FieldSpec{Path: p})
			}
			if _, err := redact.Compile(spec); err != nil && subjectOK {
				add("%s: fields: %v", where, strings.TrimPrefix(err.Error(), "redact: "))
			}
		}
		for p, a := range r.Actions {
			if _, ok := r.Fields[p]; !ok {
				add("%s: actions.%s: not a field of this route", where, p)
			}
			if !actions[a] {
				add("%s: actions.%s: must be null, remove, mask or hash (got %q)", where, p, a)
			}
		}
	}
	checkSteps := func(where string, steps []WipeStep) {
		for i, s := range steps {
			where := fmt.Sprintf("%s[%d]", where, i)
			if s.Name == "" {
				add("%s: name is required", where)
			}
			if !methods[strings.ToUpper(s.Method)] {
				add("%s: method %q is not an HTTP method", where, s.Method)
			}
			if !strings.HasPrefix(s.Path, "/") || !strings.Contains(s.Path, "{id}") {
				add("%s: path must start with / and contain {id} (got %q)", where, s.Path)
			}
			if s.Body != nil {
				if _, err := StepBody(s.Body); err != nil {
					add("%s: body: %v", where, err)
				}
			}
		}
	}
	for entity, steps := range c.Wipes.Steps {
		checkSteps("wipes.steps."+entity, steps)
	}
	for entity, bySens := range c.Erasure.Steps {
		for sens, steps := range bySens {
			if len(steps) == 0 {
				add("erasure.steps.%s.%s: give at least one step (a sensitivity without steps is reported not executable)", entity, sens)
			}
			checkSteps("erasure.steps."+entity+"."+sens, steps)
		}
	}
	checkSteps("erasure.communications", c.Erasure.Communications)
	if c.Lifecycle.Deletions != "hold" && c.Lifecycle.Deletions != "auto" {
		add("lifecycle.deletions: must be hold or auto (got %q)", c.Lifecycle.Deletions)
	}
	if c.Lifecycle.MaxDeletionsPerChange < 0 {
		add("lifecycle.max_deletions_per_change: must not be negative")
	}
	if c.Lifecycle.SweepInterval < 0 || c.Lifecycle.Batch < 0 || c.Lifecycle.Batch > 100000 {
		add("lifecycle: sweep_interval must be positive and batch 1..100000")
	}
	if c.Lifecycle.LeaseTTL < time.Second || c.Lifecycle.LeaseTTL > time.Hour {
		add("lifecycle.lease_ttl: must be between 1s and 1h (got %s)", c.Lifecycle.LeaseTTL)
	}
	for i, t := range c.Admin.Tokens {
		if t.Name == "" || len(t.SHA256) != 64 {
			add("admin.tokens[%d]: needs a name and the token's SHA-256 as 64 hex characters", i)
		}
	}
	if (c.Admin.TLSCert == "") != (c.Admin.TLSKey == "") {
		add("admin: tls_cert and tls_key go together")
	}
	for i, src := range c.Identity.TrustedSources {
		if _, err := parseSource(src); err != nil {
			add("identity.trusted_sources[%d]: %q is not a CIDR or an IP address", i, src)
		}
	}
	if c.Admin.ClientCA != "" && c.Admin.TLSCert == "" {
		add("admin.client_ca: mTLS needs tls_cert and tls_key")
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid config:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// bodyPath checks a path that names one value of a JSON body: gjson's syntax
// (see redact.ParsePath), no wildcards, and exactly each "#" components.
func bodyPath(p string, each int) error {
	if p == "" {
		return errors.New("a JSON path is required")
	}
	pp, err := redact.ParsePath(p)
	if err != nil {
		return err
	}
	switch {
	case pp.Wildcard():
		return fmt.Errorf("path %q: a subject or type path names one value: no * or ?", p)
	case each == 0 && pp.Each() > 0:
		return fmt.Errorf("path %q: a single value has no # (# is for a list's items, from: item)", p)
	case each == 1 && pp.Each() != 1:
		return fmt.Errorf("path %q: needs exactly one # for the list's items (e.g. data.#.id)", p)
	}
	return nil
}

// validateCommunication checks a communication route's value specs: the id
// may come from the backend's answer, every other value from the request.
func validateCommunication(c *CommunicationSpec, params map[string]bool, add func(format string, args ...any)) {
	if c.ID == nil {
		add("id is required (where the communication record's id is, e.g. {from: response_body, path: id})")
	}
	vals := c.values()
	for _, key := range sortedKeys(vals) {
		v := vals[key]
		if v == nil {
			continue
		}
		if v.Value != "" {
			if v.From != "" || v.Name != "" || v.Path != "" {
				add("%s: give value (a constant) or from, not both", key)
			}
			continue
		}
		switch v.From {
		case FromBody:
			if err := bodyPath(v.Path, 0); err != nil {
				add("%s.path: %v", key, err)
			}
		case FromResponseBody:
			if key != "id" {
				add("%s: only id may come from the response (the rules are matched before the backend answers)", key)
			} else if err := bodyPath(v.Path, 0); err != nil {
				add("%s.path: %v", key, err)
			}
		case FromPath:
			if !params[v.Name] {
				add("%s.name %q is not a {parameter} of the path", key, v.Name)
			}
		case FromQuery, FromHeader:
			if v.Name == "" {
				add("%s.name is required for from: %s", key, v.From)
			}
		default:
			add("%s.from must be body, path, query, header or response_body (id only), or give value (got %q)", key, v.From)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// StepBody encodes a step's YAML body as JSON. Only JSON-compatible values
// (maps with string keys, lists, scalars, null) are accepted.
func StepBody(v any) ([]byte, error) {
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return nil, fmt.Errorf("not expressible as JSON: %w", err)
	}
	return b, nil
}

// jsonable turns yaml.v3's map[string]any / map[any]any trees into values
// encoding/json accepts (it refuses map[any]any).
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = jsonable(x)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = jsonable(x)
		}
		return out
	}
	return v
}

// templateKey makes routes that differ only by parameter names compare equal.
func templateKey(p string) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for i, s := range segs {
		if paramSeg.MatchString(s) {
			segs[i] = "{}"
		}
	}
	return "/" + strings.Join(segs, "/")
}

func commTypeNames() string {
	names := make([]string, 0, len(model.CommTypes))
	for n := range model.CommTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
