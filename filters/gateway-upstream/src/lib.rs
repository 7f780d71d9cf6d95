//! `aigw_gateway_upstream.wasm`: the per-attempt plugins (`gateway_upstream`,
//! `auth_key_swap_upstream`, `route_select_upstream`, `quota_upstream`), see `aigw_filters`.

aigw_host::main!(aigw_filters::upstream_root);
