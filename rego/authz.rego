# gdprgate default request policy.
#
# Go computes the facts (the caller's permissions, the subject's per-bit
# lifecycle states, coverage and whether a grant permits the communication);
# this policy decides. It reads only input.route, input.caller,
# input.subject, input.config and input.store, which is what lets the engine
# memoise its decisions per distinct set of facts. A policy that also reads
# input.attributes, input.parsed_* or input.now still works, but every
# request is then evaluated.
#
# Rules, in precedence order (first match wins):
#   a. store unavailable, not fail-open          -> 503 store_unavailable
#   b. caller not authenticated                  -> 401 unauthenticated
#   c. subject restricted (wiped)                -> 404 (list items: allow, nothing visible)
#   e. every bit of the subject obliviated       -> 404 (list items: allow, nothing visible)
#   f. export without export_evidence            -> 403 export_not_permitted
#   g. outbound without a permitting grant       -> 403 communication_not_permitted
#   h. write changing fields the caller may not  -> 403 write_not_permitted (denied_mask)
#   i. otherwise allow with the caller's visible mask
#
# gdpr_enforced false stops the lifecycle, nothing else (the manual: "the
# corresponding processes of archiving, expiration and forgetting in data
# processing are not running"): archived and expired bits count as active,
# while role masks, permissions, restrictions and wipes still apply, and
# obliviated bits stay hidden. Go already freezes the states (lifecycle.Freeze:
# the bits obliviated when enforcement stopped stay obliviated); the policy
# counts archived and expired bits as active too, so that the rule holds for
# facts computed elsewhere.
#
# Fail-open (store unavailable, config.fail_open true) lets requests through
# but proves nothing about the subject: the subject's lifecycle states are
# ignored (rule e does not apply), the caller checks still apply, outbound
# communication is still refused unless a grant is known to permit it, and an
# allowed request shows no mapped field (visible_mask 0), even when
# gdpr_enforced is false, because the config itself may be stale.
#
# Messages are for humans and never carry personal data.
package gdprgate.authz

# degraded: the store is down and the operator chose fail-open.
degraded if {
	input.store.unavailable == true
	input.config.fail_open == true
}

subject_wiped if {
	input.subject.present == true
	input.subject.restricted == true
}

# subject_gone: every defined bit is obliviated; the data counts as deleted.
# Not when degraded: the states are then unproven (the gate reports every
# bit obliviated so that nothing is shown), and fail-open must not turn
# every read into a 404.
subject_gone if {
	not degraded
	input.subject.present == true
	input.subject.obliviated != 0
	bits.or(bits.or(input.subject.active, input.subject.archived), input.subject.expired) == 0
}

is_list if input.route.kind == "list"

decision := deny(503, "store_unavailable", "The GDPR store is unavailable; the request cannot be checked.") if {
	input.store.unavailable == true
	not input.config.fail_open == true
} else := deny(401, "unauthenticated", "The caller is not authenticated.") if {
	not input.caller.authenticated == true
} else := allow_mask(0) if {
	subject_wiped
	is_list
} else := deny(404, "subject_not_found", "The requested data subject does not exist.") if {
	subject_wiped
} else := allow_mask(0) if {
	subject_gone
	is_list
} else := deny(404, "subject_not_found", "The requested data subject does not exist.") if {
	subject_gone
} else := deny(403, "export_not_permitted", "The caller's roles do not permit exporting personal data.") if {
	input.route.kind == "export"
	not input.caller.export_evidence == true
} else := deny(403, "communication_not_permitted", "No legal ground in force permits this communication with the data subject.") if {
	input.route.kind == "outbound"
	not input.subject.comm_permitted == true
} else := deny_write if {
	input.route.kind == "write"
	write_denied != 0
} else := allow_mask(visible_mask)

# h. Writes need rights: a write may change a mapped field only when the
# caller may see that field's bit now — in its mask and active, or archived
# (archive mode) or expired when it may view those. A write whose subject is
# not named by the request (a create) needs the mask only. denied_mask lets
# gdprgate name the refused fields (never their values).
write_mask := input.write.mask if {
	is_number(input.write.mask)
} else := 0

# Degraded (fail-open), nothing about the subject is proven: no mapped
# field may be written.
writable := 0 if {
	degraded
} else := visible_mask if {
	input.subject.present == true
} else := input.caller.sensitivity_mask

write_denied := bits.and(write_mask, bits.negate(writable))

deny_write := object.union(
	deny(403, "write_not_permitted", "The caller may not change some of the fields this request writes."),
	{"denied_mask": write_denied},
)

# visible_mask: the caller's sensitivity bits that are active, archived when
# the caller may view archived and asked for archive mode, or expired when it
# may view expired. Obliviated bits are never visible.
visible_mask := bits.and(input.caller.sensitivity_mask, bits.or(bits.or(input.subject.active, archived_shown), expired_shown)) if {
	not not_enforced
} else := bits.and(input.caller.sensitivity_mask, bits.or(bits.or(input.subject.active, input.subject.archived), input.subject.expired))

# not_enforced: gdpr_enforced is explicitly false (a missing config counts as
# enforced).
not_enforced if input.config.gdpr_enforced == false

archived_shown := input.subject.archived if {
	input.caller.view_archived == true
	input.caller.archive_mode == true
} else := 0

expired_shown := input.subject.expired if {
	input.caller.view_expired == true
} else := 0

deny(status, reason, message) := {
	"allow": false,
	"status": status,
	"reason": reason,
	"message": message,
	"headers": {},
	"visible_mask": 0,
}

allow_mask(mask) := {
	"allow": true,
	"status": 200,
	"reason": "allowed",
	"message": "",
	"headers": headers,
	"visible_mask": effective_mask(mask),
	"record_evidence": record_evidence,
	"renew_explicit": renew_explicit,
}

# On a communication route gdprgate records the evidence the rules table
# gives only for a caller with the manual's EditGdprEvidence permission, and
# a communication marked as a renewal renews "explicit" purposes (the
# manual: "Manual (if the agent has rights)") only for a caller with
# GdprPermission. Auto and implicit renewals need no permission: the manual
# makes them happen on every (marked) communication.
record_evidence := true if {
	input.route.kind == "communication"
	input.caller.edit_evidence == true
	not degraded
} else := false

renew_explicit := true if {
	input.route.kind == "communication"
	input.caller.gdpr_permission == true
	not degraded
} else := false

effective_mask(mask) := 0 if {
	degraded
} else := mask

headers := {"x-gdpr-degraded": "store_unavailable"} if {
	degraded
} else := coverage_headers if {
	input.subject.present == true
	is_number(input.subject.coverage_explicit)
	is_number(input.subject.coverage_inherited)
} else := {"x-gdpr-coverage": input.subject.coverage} if {
	input.subject.present == true
	is_string(input.subject.coverage)
	input.subject.coverage != ""
} else := {}

# Coverage colours, the manual's: "Red – We have no coverage. Blue – We have
# coverage - at least one explicit. Green – We have at least one inherited
# coverage." Go counts only evidence that grants something now. The colours
# are over the bits the caller may see: a colour must not tell an agent that
# evidence exists for data it may not see (an Art. 9 consent, say).
# x-gdpr-coverage-bits colours each of those bits ("0:blue,1:blue,3:red").
coverage_headers := object.union({"x-gdpr-coverage": colour(caller_bits)}, coverage_bits_header)

defined_bits := bits.or(bits.or(input.subject.active, input.subject.archived), bits.or(input.subject.expired, input.subject.obliviated))

caller_bits := bits.and(input.caller.sensitivity_mask, defined_bits)

colour(m) := "blue" if {
	bits.and(input.subject.coverage_explicit, m) != 0
} else := "green" if {
	bits.and(input.subject.coverage_inherited, m) != 0
} else := "red"

coverage_bits_header := {"x-gdpr-coverage-bits": concat(",", [sprintf("%d:%s", [b, colour(bits.lsh(1, b))]) |
	some b in numbers.range(0, 31)
	bits.and(caller_bits, bits.lsh(1, b)) != 0
])} if {
	caller_bits != 0
} else := {}
