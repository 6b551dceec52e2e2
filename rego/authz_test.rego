# Tests of the default policy: every rule and its precedence over the next.
package gdprgate.authz_test

import data.gdprgate.authz

# Alice (c-1): bits 0-3 active, covered by explicit evidence.
alice := {
	"present": true, "known": true, "restricted": false,
	"active": 15, "archived": 0, "expired": 0, "obliviated": 0,
	"coverage": "blue", "coverage_explicit": 15, "coverage_inherited": 0,
	"comm_permitted": true,
}

# Bob (c-2): bits 0-2 archived, bit 3 obliviated.
bob := object.union(alice, {"active": 0, "archived": 7, "obliviated": 8})

# Eve (c-5): everything obliviated.
eve := object.union(alice, {"active": 0, "obliviated": 15, "coverage": "red", "coverage_explicit": 0, "comm_permitted": false})

agent := {
	"authenticated": true, "roles": ["agent"], "sensitivity_mask": 7,
	"view_archived": false, "view_expired": false, "export_evidence": false,
	"edit_items": false, "archive_mode": false,
}

supervisor := object.union(agent, {"roles": ["supervisor"], "sensitivity_mask": 15, "view_archived": true})

auditor := object.union(supervisor, {"roles": ["auditor"], "view_expired": true, "export_evidence": true})

base := {
	"route": {"kind": "read", "comm_type": ""},
	"caller": agent,
	"subject": alice,
	"config": {"gdpr_enforced": true, "fail_open": false},
	"store": {"unavailable": false},
}

with_subject(s) := object.union(base, {"subject": s})

with_caller(c) := object.union(base, {"caller": c})

with_kind(k) := object.union(base, {"route": {"kind": k, "comm_type": ""}})

# i. visible masks

test_agent_sees_active_bits_in_mask if {
	d := authz.decision with input as base
	d.allow
	d.status == 200
	d.visible_mask == 7
	d.headers == {"x-gdpr-coverage": "blue", "x-gdpr-coverage-bits": "0:blue,1:blue,2:blue"}
}

test_supervisor_sees_everything_active if {
	d := authz.decision with input as with_caller(supervisor)
	d.visible_mask == 15
}

test_archived_hidden_from_agent if {
	d := authz.decision with input as with_subject(bob)
	d.allow
	d.visible_mask == 0
}

test_archived_needs_archive_mode if {
	d := authz.decision with input as object.union(with_subject(bob), {"caller": supervisor})
	d.visible_mask == 0
}

test_archived_shown_in_archive_mode if {
	sup := object.union(supervisor, {"archive_mode": true})
	d := authz.decision with input as object.union(with_subject(bob), {"caller": sup})
	d.visible_mask == 7
}

test_archive_mode_without_permission_shows_nothing if {
	ag := object.union(agent, {"archive_mode": true})
	d := authz.decision with input as object.union(with_subject(bob), {"caller": ag})
	d.visible_mask == 0
}

test_expired_shown_only_with_view_expired if {
	dan := object.union(alice, {"active": 3, "expired": 4, "obliviated": 8, "coverage": "red", "coverage_explicit": 0})
	a := authz.decision with input as with_subject(dan)
	a.visible_mask == 3
	a.headers == {"x-gdpr-coverage": "red", "x-gdpr-coverage-bits": "0:red,1:red,2:red"}
	b := authz.decision with input as object.union(with_subject(dan), {"caller": auditor})
	b.visible_mask == 7
}

# The manual: "Red – We have no coverage. Blue – We have coverage - at least
# one explicit. Green – We have at least one inherited coverage." Per bit for
# UIs that colour fields, and only over the bits the caller may see.

test_coverage_per_sensitivity_for_uis_that_colour_fields if {
	carol := object.union(alice, {"active": 0, "expired": 3, "obliviated": 12, "coverage": "blue", "coverage_explicit": 8})
	d := authz.decision with input as object.union(with_subject(carol), {"caller": supervisor})
	d.headers == {"x-gdpr-coverage": "blue", "x-gdpr-coverage-bits": "0:red,1:red,2:red,3:blue"}
}

test_coverage_never_tells_of_evidence_for_bits_the_caller_may_not_see if {
	mallory := object.union(alice, {"coverage": "blue", "coverage_explicit": 8})
	d := authz.decision with input as with_subject(mallory)
	d.headers["x-gdpr-coverage"] == "red"
	not contains(d.headers["x-gdpr-coverage-bits"], "3:")
}

test_inherited_coverage_is_green if {
	phone := object.union(alice, {"coverage": "green", "coverage_explicit": 0, "coverage_inherited": 7})
	d := authz.decision with input as with_subject(phone)
	d.headers == {"x-gdpr-coverage": "green", "x-gdpr-coverage-bits": "0:green,1:green,2:green"}
}

test_no_subject_no_coverage_header if {
	d := authz.decision with input as with_subject({
		"present": false, "known": false, "restricted": false,
		"active": 0, "archived": 0, "expired": 0, "obliviated": 0,
		"coverage": "red", "comm_permitted": false,
	})
	d.allow
	d.headers == {}
	d.visible_mask == 0
}

# a. store unavailable

test_store_unavailable_fails_closed if {
	d := authz.decision with input as object.union(base, {"store": {"unavailable": true}})
	not d.allow
	d.status == 503
	d.reason == "store_unavailable"
}

test_store_unavailable_beats_unauthenticated if {
	d := authz.decision with input as object.union(base, {
		"store": {"unavailable": true},
		"caller": {"authenticated": false},
	})
	d.status == 503
}

test_fail_open_allows_but_shows_nothing if {
	d := authz.decision with input as object.union(base, {
		"store": {"unavailable": true},
		"config": {"gdpr_enforced": true, "fail_open": true},
	})
	d.allow
	d.visible_mask == 0
	d.headers == {"x-gdpr-degraded": "store_unavailable"}
}

test_fail_open_ignores_gdpr_not_enforced if {
	d := authz.decision with input as object.union(base, {
		"store": {"unavailable": true},
		"config": {"gdpr_enforced": false, "fail_open": true},
	})
	d.allow
	d.visible_mask == 0
}

test_fail_open_still_denies_unauthenticated if {
	d := authz.decision with input as object.union(base, {
		"store": {"unavailable": true},
		"config": {"gdpr_enforced": true, "fail_open": true},
		"caller": {"authenticated": false},
	})
	d.status == 401
}

test_fail_open_still_denies_export_without_permission if {
	d := authz.decision with input as object.union(with_kind("export"), {
		"store": {"unavailable": true},
		"config": {"gdpr_enforced": true, "fail_open": true},
	})
	d.status == 403
	d.reason == "export_not_permitted"
}

degraded := {
	"store": {"unavailable": true},
	"config": {"gdpr_enforced": true, "fail_open": true},
}

test_fail_open_ignores_unproven_obliviation if {
	d := authz.decision with input as object.union(with_subject(eve), degraded)
	d.allow
	d.visible_mask == 0
}

test_fail_open_still_refuses_unproven_communication if {
	d := authz.decision with input as object.union(base, object.union(degraded, {
		"route": {"kind": "outbound", "comm_type": "campaign_oc"},
		"subject": object.union(alice, {"comm_permitted": false}),
	}))
	d.status == 403
	d.reason == "communication_not_permitted"
}

test_fail_open_still_hides_wiped_subject if {
	d := authz.decision with input as object.union(with_subject(wiped), degraded)
	d.status == 404
}

test_fail_open_unused_when_store_available if {
	d := authz.decision with input as object.union(base, {"config": {"gdpr_enforced": true, "fail_open": true}})
	d.visible_mask == 7
}

# b. authentication

test_unauthenticated_denied if {
	d := authz.decision with input as with_caller(object.union(agent, {"authenticated": false}))
	not d.allow
	d.status == 401
	d.reason == "unauthenticated"
}

test_missing_caller_denied if {
	d := authz.decision with input as object.remove(base, ["caller"])
	d.status == 401
}

test_unauthenticated_beats_wiped if {
	d := authz.decision with input as object.union(with_subject(object.union(alice, {"restricted": true})), {
		"caller": {"authenticated": false},
	})
	d.status == 401
}

# c. wiped subjects

wiped := object.union(alice, {"restricted": true})

test_wiped_subject_not_found_for_every_kind if {
	every kind in ["read", "export", "write", "outbound"] {
		d := authz.decision with input as object.union(with_kind(kind), {"subject": wiped, "caller": auditor})
		d.status == 404
	}
}

test_wiped_gone_even_when_not_enforced if {
	d := authz.decision with input as object.union(with_subject(wiped), {"config": {"gdpr_enforced": false, "fail_open": false}})
	d.status == 404
}

test_wiped_list_item_hidden_not_404 if {
	d := authz.decision with input as object.union(with_kind("list"), {"subject": wiped})
	d.allow
	d.visible_mask == 0
}

test_restricted_without_present_subject_ignored if {
	d := authz.decision with input as with_subject(object.union(wiped, {"present": false}))
	d.allow
}

# d. gdpr_enforced false. The manual: with GdprEnforced false "the
# corresponding processes of archiving, expiration and forgetting in data
# processing are not running" — the lifecycle stops, nothing else does.

not_enforced(i) := object.union(i, {"config": {"gdpr_enforced": false, "fail_open": false}})

test_not_enforced_archiving_not_running_archived_bits_count_as_active if {
	d := authz.decision with input as not_enforced(with_subject(bob))
	d.allow
	d.visible_mask == 7
}

test_not_enforced_expiration_not_running_expired_bits_count_as_active if {
	d := authz.decision with input as not_enforced(with_subject(object.union(alice, {"active": 0, "expired": 3, "obliviated": 12})))
	d.allow
	d.visible_mask == 3
}

test_not_enforced_role_mask_still_applies_agent_never_sees_health if {
	d := authz.decision with input as not_enforced(base)
	d.visible_mask == 7
}

test_not_enforced_obliviated_data_never_comes_back if {
	d := authz.decision with input as not_enforced(with_subject(eve))
	not d.allow
	d.status == 404
	p := authz.decision with input as not_enforced(with_subject(bob))
	bits.and(p.visible_mask, 8) == 0
}

test_not_enforced_export_still_needs_export_evidence if {
	d := authz.decision with input as not_enforced(with_kind("export"))
	not d.allow
	d.reason == "export_not_permitted"
}

test_not_enforced_outbound_still_needs_a_grant if {
	d := authz.decision with input as not_enforced(object.union(base, {"route": {"kind": "outbound", "comm_type": "campaign_oc"}, "subject": object.union(alice, {"comm_permitted": false})}))
	d.reason == "communication_not_permitted"
}

test_missing_config_is_enforced if {
	d := authz.decision with input as object.union(object.remove(base, ["config"]), {"subject": bob})
	d.visible_mask == 0
}

# e. obliviated subjects

test_obliviated_subject_not_found if {
	every kind in ["read", "export", "write", "outbound"] {
		d := authz.decision with input as object.union(with_kind(kind), {"subject": eve, "caller": auditor})
		d.status == 404
		d.reason == "subject_not_found"
	}
}

test_obliviated_list_item_hidden if {
	d := authz.decision with input as object.union(with_kind("list"), {"subject": eve})
	d.allow
	d.visible_mask == 0
}

test_partly_obliviated_subject_served if {
	d := authz.decision with input as with_subject(bob)
	d.allow
}

test_subject_without_bits_not_gone if {
	d := authz.decision with input as with_subject(object.union(alice, {"active": 0}))
	d.allow
}

test_obliviated_beats_export_check if {
	d := authz.decision with input as object.union(with_kind("export"), {"subject": eve})
	d.status == 404
}

# f. export

test_export_needs_export_evidence if {
	d := authz.decision with input as with_kind("export")
	not d.allow
	d.status == 403
	d.reason == "export_not_permitted"
}

test_auditor_may_export if {
	d := authz.decision with input as object.union(with_kind("export"), {"caller": auditor})
	d.allow
	d.visible_mask == 15
}

test_export_check_beats_outbound_check if {
	d := authz.decision with input as object.union(with_kind("export"), {"subject": object.union(alice, {"comm_permitted": false})})
	d.reason == "export_not_permitted"
}

# g. outbound communication

test_outbound_needs_permitting_grant if {
	dan := object.union(alice, {"active": 3, "expired": 4, "obliviated": 8, "coverage": "red", "comm_permitted": false})
	d := authz.decision with input as object.union(base, {"route": {"kind": "outbound", "comm_type": "campaign_oc"}, "subject": dan})
	not d.allow
	d.status == 403
	d.reason == "communication_not_permitted"
}

test_outbound_with_grant_allowed if {
	d := authz.decision with input as object.union(base, {"route": {"kind": "outbound", "comm_type": "campaign_oc"}})
	d.allow
}

test_comm_permitted_irrelevant_for_reads if {
	d := authz.decision with input as with_subject(object.union(alice, {"comm_permitted": false}))
	d.allow
}

# Messages never carry the subject or caller.

test_denials_have_messages if {
	every i in [
		object.union(base, {"store": {"unavailable": true}}),
		with_caller({"authenticated": false}),
		with_subject(wiped),
		with_subject(eve),
		with_kind("export"),
	] {
		d := authz.decision with input as i
		not d.allow
		d.message != ""
		not contains(d.message, "blue")
	}
}

# h. Writes need rights. A write may change a mapped field only when the
# caller may see its bit now (in its mask and active, or archived/expired in
# the matching mode); the refused bits are named by denied_mask.

with_write(subject, caller, mask) := object.union(base, {
	"route": {"kind": "write", "comm_type": ""},
	"subject": subject, "caller": caller, "write": {"mask": mask},
})

test_write_of_active_bits_in_mask_allowed if {
	d := authz.decision with input as with_write(alice, agent, 3)
	d.allow
}

test_write_of_a_bit_outside_the_mask_refused if {
	d := authz.decision with input as with_write(alice, agent, 9)
	not d.allow
	d.status == 403
	d.reason == "write_not_permitted"
	d.denied_mask == 8
}

test_write_to_archived_subject_refused_without_archive_mode if {
	d := authz.decision with input as with_write(bob, supervisor, 2)
	d.reason == "write_not_permitted"
	d.denied_mask == 2
	sup := object.union(supervisor, {"archive_mode": true})
	e := authz.decision with input as with_write(bob, sup, 2)
	e.allow
}

test_write_to_expired_bits_needs_view_expired if {
	carol := object.union(alice, {"active": 0, "expired": 3, "obliviated": 12})
	d := authz.decision with input as with_write(carol, object.union(agent, {"roles": ["marketer"], "sensitivity_mask": 3}), 2)
	d.reason == "write_not_permitted"
	e := authz.decision with input as with_write(carol, auditor, 2)
	e.allow
}

test_write_without_mapped_fields_allowed if {
	d := authz.decision with input as with_write(bob, agent, 0)
	d.allow
}

test_create_without_subject_needs_the_mask_only if {
	none := {"present": false, "known": false, "restricted": false, "active": 0, "archived": 0, "expired": 0, "obliviated": 0, "coverage": "", "comm_permitted": false}
	d := authz.decision with input as with_write(none, agent, 7)
	d.allow
	e := authz.decision with input as with_write(none, agent, 8)
	e.denied_mask == 8
}

test_fail_open_refuses_unprovable_writes if {
	i := object.union(with_write(alice, agent, 2), {"store": {"unavailable": true}, "config": {"gdpr_enforced": true, "fail_open": true}})
	d := authz.decision with input as i
	d.reason == "write_not_permitted"
}

test_reads_ignore_write_mask if {
	d := authz.decision with input as object.union(base, {"write": {"mask": 8}})
	d.allow
}

# j. Roles' GDPR permissions on communication routes. The manual's
# EditGdprEvidence lets a caller's communications record the rules' evidence;
# RenewalType "Explicit - Manual (if the agent has rights)": GdprPermission
# lets a communication marked as a renewal renew explicit purposes.

with_comm(caller) := object.union(base, {"route": {"kind": "communication", "comm_type": ""}, "caller": caller})

test_communication_records_evidence_only_with_edit_evidence if {
	d := authz.decision with input as with_comm(object.union(agent, {"edit_evidence": true}))
	d.allow
	d.record_evidence == true
	d.renew_explicit == false
	e := authz.decision with input as with_comm(agent)
	e.allow
	e.record_evidence == false
}

test_explicit_renewal_needs_gdpr_permission if {
	d := authz.decision with input as with_comm(object.union(supervisor, {"gdpr_permission": true}))
	d.renew_explicit == true
}

test_reads_record_no_evidence if {
	d := authz.decision with input as with_caller(object.union(agent, {"edit_evidence": true, "gdpr_permission": true}))
	d.record_evidence == false
	d.renew_explicit == false
}

test_communication_with_a_wiped_subject_not_found if {
	d := authz.decision with input as object.union(with_comm(object.union(agent, {"edit_evidence": true})), {"subject": object.union(alice, {"restricted": true})})
	d.status == 404
}

test_degraded_communication_records_nothing if {
	i := object.union(with_comm(object.union(agent, {"edit_evidence": true, "gdpr_permission": true})), {"store": {"unavailable": true}, "config": {"gdpr_enforced": true, "fail_open": true}})
	d := authz.decision with input as i
	d.record_evidence == false
	d.renew_explicit == false
}
