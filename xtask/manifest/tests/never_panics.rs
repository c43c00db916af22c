//! Property test: no manifest text, however broken, makes the loader panic.

use proptest::prelude::*;

const PIECES: &[&str] = &[
    "[system]\n",
    "name = \"t\"\n",
    "[machine]\n",
    "cpus = 70\n",
    "memory = \"3M\"\n",
    "[[machine.device]]\n",
    "id = \"a\"\n",
    "model = \"pcie-root-port\"\n",
    "model = \"edu\"\n",
    "bus = \"a\"\n",
    "addr = \"00.7\"\n",
    "props = { sriov_max_vfs = 200 }\n",
    "model = \"nvme\"\n",
    "[[guest]]\n",
    "cpus = [0, 0, -1]\n",
    "kernel = \"builtin:probe\"\n",
    "[[guest.pci]]\n",
    "device = \"a.vf9\"\n",
    "device = \"00:1f.0\"\n",
    "vbdf = \"ff:1f.7\"\n",
    "functions = \"all\"\n",
    "vcpus = 9999999999\n",
    "memory = 99999999999999999\n",
];

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = sluice_manifest::load_str("fuzz.toml", &text).map_err(|e| e.to_string());
    }

    #[test]
    fn shuffled_manifest_pieces_never_panic(picks in proptest::collection::vec(0usize..PIECES.len(), 0..30)) {
        let text: String = picks.iter().map(|&i| PIECES[i]).collect();
        match sluice_manifest::load_str("fuzz.toml", &text) {
            Ok(system) => {
                let _ = system.report_text();
                prop_assert!(sluice_sysdesc::parse(&system.compile()).is_ok());
            }
            Err(error) => prop_assert!(!error.rules().is_empty()),
        }
    }
}
