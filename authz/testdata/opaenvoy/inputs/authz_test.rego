package envoy.authz_test

import data.envoy.authz

test_people if authz.allow with input as {"parsed_path": ["people"]}

test_other_denied if not authz.allow with input as {"parsed_path": ["other"]}
