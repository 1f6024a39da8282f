//! Any byte string as a request path: see `authgate_fuzz::path_rules` for the rules checked.
#![no_main]

use std::sync::LazyLock;

use authgate::routes::PublicPaths;
use authgate_fuzz::path_rules;
use libfuzzer_sys::fuzz_target;

static PUBLIC: LazyLock<PublicPaths> = LazyLock::new(path_rules::public_paths);

fuzz_target!(|data: &[u8]| path_rules::check(data, &PUBLIC));
