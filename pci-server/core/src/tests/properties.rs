//! Property tests: random config-space contents never panic enumeration, grouping, reset
//! selection, the listing, the filter or the reset executor.

use super::*;
use crate::fake::{FakeFunction, RecordingDelay};
use crate::filter::filtered_write;
use crate::listing::Listing;
use crate::reset_exec::reset_function;
use crate::AccessWidth;
use proptest::prelude::*;

fn random_function(bytes: &[u8], writable: &[u8]) -> FakeFunction {
    let mut function = FakeFunction::endpoint(0, 0, 0, 0).raw(0, bytes);
    for (offset, mask) in writable.iter().enumerate() {
        function = function.raw_writable32((offset as u16) * 4, u32::from(*mask) * 0x0101_0101);
    }
    function
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_config_spaces_never_panic(
        functions in proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..1024), proptest::collection::vec(any::<u8>(), 0..64)),
            1..6,
        ),
        offset in 0u16..4096,
        value in any::<u32>(),
    ) {
        let mut config = FakeConfigSpace::new();
        for (id, bytes, writable) in &functions {
            // Keep some functions on low buses so bridges find them.
            let bdf = Bdf::from_requester_id(id & 0x03ff);
            config.insert(bdf, random_function(bytes, writable));
        }
        let inventory = enumerate(&mut config);
        let text = format!("{}", Listing { inventory: &inventory, ownership: None });
        prop_assert!(inventory.functions().is_empty() || !text.is_empty());
        for function in inventory.functions() {
            let _ = crate::reset::reset_method(&inventory, function.bdf);
            let _ = crate::alias::dma_aliases(&inventory, function.bdf);
            prop_assert!(inventory.group_of(function.bdf).is_some());
            let aligned = offset & !3;
            let _ = filtered_write(&mut config, function, aligned, AccessWidth::Dword, value, &mut |_| {});
            let mut delay = RecordingDelay::default();
            let _ = reset_function(&mut config, &mut delay, &inventory, function.bdf);
            prop_assert!(delay.waits.len() < 200, "bounded waits");
        }
    }

    #[test]
    fn random_capability_chains_terminate(bytes in proptest::collection::vec(any::<u8>(), 4096)) {
        let mut function = FakeFunction::endpoint(0x8086, 0x1234, 0x020000, 0).raw(0, &bytes);
        // Valid IDs, capability list and PCIe-ness come from the random bytes.
        function = function.raw(0, &[0x86, 0x80, 0x34, 0x12]);
        let mut config = FakeConfigSpace::new().with(b(0, 0, 0), function);
        let inventory = enumerate(&mut config);
        let info = inventory.get(b(0, 0, 0));
        prop_assert!(info.is_some());
        let caps = &info.unwrap().capabilities;
        prop_assert!(caps.standard.len() <= 48 && caps.extended.len() <= 32);
    }
}
