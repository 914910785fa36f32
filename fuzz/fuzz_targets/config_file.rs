//! The configuration file: any text is a validated configuration or an error that says why,
//! never a panic; a configuration it accepts prints (secrets redacted) and says what it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use visage_config::Config;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    if let Ok(config) = Config::from_toml(text) {
        config.validate().expect("an accepted configuration is valid");
        let printed = config.redacted_json();
        assert!(printed.is_object());
        let _ = config.decode_limits();
    }
});
