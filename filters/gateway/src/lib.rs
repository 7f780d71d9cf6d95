//! `aigw_gateway.wasm`: the listener's plugins (`gateway`, `auth_key_swap`, `route_select`,
//! `quota`, `audit_emit`), see `aigw_filters`.

aigw_host::main!(aigw_filters::listener_root);
