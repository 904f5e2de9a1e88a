#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| snigate_fuzz::proxy_protocol::fuzz(data));
