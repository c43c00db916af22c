//! IRTEs for IOAPIC pins (`AllocateIoapicIrte`) on the fake unit: only the pci-server asks,
//! only for an IOAPIC pin and an owner, one entry per GSI; the entry verifies the IOAPIC's
//! source id from the DMAR and is level-triggered with the line's vector, so the pin's
//! remappable-format message (VT-d spec 5.1.5.1) reaches that vector and a forged one from a
//! device does not.

use super::*;
use crate::ioapic_pins::{ioapic_count, single_ioapic};
use iommu_api::{IoapicIrteReply, IoapicIrteRequest};
use iommu_core::interrupt_remapping::ioapic_redirection_entry;

/// QEMU's IOAPIC in the DMAR of [`qemu_topology`]: 255:00.0.
const IOAPIC: Bdf = Bdf(0xff00);

fn allocate(
    server: &mut Server,
    kernel: &mut FakeCapabilities,
    caller: u64,
    gsi: u32,
    owner: u32,
) -> Result<IoapicIrteReply, IommuError> {
    let request = IoapicIrteRequest { gsi, owner };
    call(
        server,
        kernel,
        caller,
        Operation::AllocateIoapicIrte,
        request.as_bytes(),
    )
    .map(|body| IoapicIrteReply::read_from_bytes(&body).unwrap())
}

/// The message an IOAPIC sends for redirection entry `entry`: RTE bits 63:48 become address
/// bits 19:4 and RTE bit 11 address bit 2 (VT-d spec 5.1.5.1); the data carries the vector and
/// the trigger mode.
fn ioapic_message(entry: u64) -> (u32, u32) {
    let address = 0xfee0_0000 | (((entry >> 48) as u32) << 4) | (((entry >> 11) & 1) as u32) << 2;
    let data = (entry & 0xff) as u32 | (((entry >> 15) & 1) as u32) << 15;
    (address, data)
}

#[test]
fn a_pin_gets_a_level_triggered_entry_that_verifies_the_ioapic() {
    let mut server = server(FakeVtdConfig::qemu(), false);
    let mut kernel = FakeCapabilities::default();
    let reply = allocate(&mut server, &mut kernel, PCI, 21, OWNER as u32).unwrap();
    assert_eq!(
        (reply.source_id, reply.vector, reply.unit),
        (IOAPIC, 0x30 + 21, 0)
    );
    let status = query(&mut server, &mut kernel, PCI, reply.handle).unwrap();
    assert_eq!(
        status,
        IrteStatusReply {
            owner: 0,
            present: 1,
            source_validation: 1,
            source_qualifier: 0,
            vector: 0x30 + 21,
            source_id: IOAPIC,
            reserved: 0,
        },
        "no owner's MSI line: ProgramMsi can never select it"
    );
    let entry = ioapic_redirection_entry(reply.handle, reply.vector, true, true);
    let (address, data) = ioapic_message(entry);
    let fake = unit_fake(&mut server, 0);
    let delivered = fake.interrupt(IOAPIC, address, data).unwrap();
    assert_eq!(delivered.index, reply.handle);
    assert_eq!(delivered.vector, 0x30 + 21);
    assert!(delivered.level_triggered);
    assert_eq!((delivered.destination >> 8) & 0xff, 0, "APIC 0");
    assert!(
        fake.interrupt(DEVICE, address, data).is_err(),
        "a device forging the IOAPIC's message is refused by source-id verification"
    );
}

#[test]
fn only_the_pci_server_asks_for_an_owner_and_an_ioapic_pin() {
    let mut server = server(FakeVtdConfig::qemu(), false);
    let mut kernel = FakeCapabilities::default();
    for (caller, gsi, owner, refusal) in [
        (OWNER, 21, OWNER as u32, IommuError::NotOwner),
        (OTHER_OWNER, 21, OWNER as u32, IommuError::NotOwner),
        (PCI, 21, PCI as u32, IommuError::NotOwner),
        (PCI, 21, 5, IommuError::NotOwner),
        (PCI, 24, OWNER as u32, IommuError::NotAnIoapicPin),
        (PCI, 0x30, OWNER as u32, IommuError::NotAnIoapicPin),
        (PCI, u32::MAX, OWNER as u32, IommuError::NotAnIoapicPin),
    ] {
        assert_eq!(
            allocate(&mut server, &mut kernel, caller, gsi, owner),
            Err(refusal),
            "caller {caller} gsi {gsi} owner {owner}"
        );
    }
    // Nothing was taken by the refusals: the first handle is still free.
    let reply = allocate(&mut server, &mut kernel, PCI, 16, OWNER as u32).unwrap();
    assert_eq!(reply.handle, 0);
}

#[test]
fn a_gsi_has_one_entry_until_it_is_freed() {
    let mut server = server(FakeVtdConfig::qemu(), false);
    let mut kernel = FakeCapabilities::default();
    let first = allocate(&mut server, &mut kernel, PCI, 21, OWNER as u32).unwrap();
    let before = server.remapping.read(&server.memory, first.handle);
    assert_eq!(
        allocate(&mut server, &mut kernel, PCI, 21, OTHER_OWNER as u32),
        Err(IommuError::GsiInUse),
        "an INTx line is never shared between owners"
    );
    assert_eq!(server.remapping.read(&server.memory, first.handle), before);
    let other = allocate(&mut server, &mut kernel, PCI, 22, OTHER_OWNER as u32).unwrap();
    assert_ne!(other.handle, first.handle);
    // Owners cannot free the pci-server's entries; the pci-server can.
    let free = iommu_api::IrteRequest {
        handle: first.handle,
        reserved: 0,
    };
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::FreeIrte,
            free.as_bytes()
        ),
        Err(IommuError::NotOwner)
    );
    call(
        &mut server,
        &mut kernel,
        PCI,
        Operation::FreeIrte,
        free.as_bytes(),
    )
    .unwrap();
    let status = query(&mut server, &mut kernel, PCI, first.handle).unwrap();
    assert_eq!(status.present, 0);
    let again = allocate(&mut server, &mut kernel, PCI, 21, OTHER_OWNER as u32).unwrap();
    assert_eq!(again.vector, 0x30 + 21);
}

#[test]
fn without_interrupt_remapping_no_pin_gets_an_entry() {
    let config = FakeVtdConfig::qemu().without_interrupt_remapping();
    let mut server = server(config, true);
    let mut kernel = FakeCapabilities::default();
    assert_eq!(
        allocate(&mut server, &mut kernel, PCI, 21, OWNER as u32),
        Err(IommuError::InterruptRemappingUnavailable)
    );
}

fn topology_with(scopes: &[Vec<u8>]) -> Topology {
    let bytes = table(39, 0x1, &[drhd(1, 0xfed9_0000, scopes)]);
    let dmar = Dmar::parse(&bytes).unwrap();
    Topology::from_dmar(&dmar, &mut NoBridges).unwrap()
}

#[test]
fn the_ioapic_is_taken_from_the_dmar_only_when_there_is_exactly_one() {
    let none = topology_with(&[]);
    assert_eq!(single_ioapic(&none), Err(IommuError::NoIoapicScope));
    assert_eq!(ioapic_count(&none), 0);
    let one = topology_with(&[scope(3, 8, 0xf0, &[(0x1f, 0)])]);
    assert_eq!(
        single_ioapic(&one),
        Ok((0, Bdf::new(0xf0, 0x1f, 0).unwrap(), 8))
    );
    let two = topology_with(&[
        scope(3, 8, 0xf0, &[(0x1f, 0)]),
        scope(3, 9, 0xf0, &[(0x1f, 1)]),
    ]);
    assert_eq!(ioapic_count(&two), 2);
    assert_eq!(
        single_ioapic(&two),
        Err(IommuError::AmbiguousIoapic),
        "which IOAPIC has a GSI needs the MADT: not guessed"
    );
}
