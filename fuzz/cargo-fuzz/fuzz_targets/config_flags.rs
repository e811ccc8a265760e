#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar_fuzz::config_flags(data));
