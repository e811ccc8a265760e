#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar_fuzz::capture_tap(data));
