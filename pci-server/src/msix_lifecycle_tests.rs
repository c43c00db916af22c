//! Host tests of the MSI-X hygiene around the programming operation, on the fixtures of
//! [`crate::msix_tests`]: forged IRTE handles refused without a write, the table cleared and
//! unmapped on release and cleared again on the next claim, nothing mapped after a failed
//! claim, table and pending bits read for the owner while their pages stay out of its BARs.

use iommu_api::IrteStatusReply;
use pci_api::{ClaimRequest, MsiProgramRequest, Operation, OwnerId, PciError};
use pci_core::fake::q35;
use pci_core::msi::{MsixEntryRegister, MsixTable};
use pci_core::registers::msix;
use pci_core::ConfigSpace;
use zerocopy::IntoBytes;

use crate::msix_tests::{
    call, claim, grant, msix_request, program, server, set_command, TestServer, OTHER, OWNER,
};

#[test]
fn forged_irte_handles_are_refused_and_write_nothing() {
    let mut server = server(0xfe00_0000);
    claim(&mut server, q35::NVME);
    claim(&mut server, q35::EDU);
    assert_eq!(set_command(&mut server, 0x0006), 0);
    grant(&mut server, 4, OWNER, q35::NVME);
    grant(&mut server, 5, OTHER, q35::NVME);
    grant(&mut server, 6, OWNER, q35::EDU);
    server.iommu.1.push((
        7,
        IrteStatusReply {
            present: 0,
            ..server.iommu.1[0].1
        },
    ));
    server.config.clear_log();
    let mut with_subhandle = msix_request(q35::NVME, 0, 0xfff0);
    with_subhandle.flags = 1;
    with_subhandle.subhandle = 0x20;
    let mut subhandle_elsewhere = msix_request(q35::NVME, 0, 4);
    subhandle_elsewhere.flags = 1;
    subhandle_elsewhere.subhandle = 1;
    let forged = [
        ("allocated by nobody", msix_request(q35::NVME, 0, 200)),
        ("another owner's", msix_request(q35::NVME, 0, 5)),
        (
            "the caller's, for another device",
            msix_request(q35::NVME, 0, 6),
        ),
        ("allocated, not programmed", msix_request(q35::NVME, 0, 7)),
        ("index beyond 16 bits", with_subhandle),
        ("handle + subhandle is another owner's", subhandle_elsewhere),
    ];
    for (what, request) in forged {
        assert_eq!(
            program(&mut server, OWNER, request),
            PciError::IrteNotOwned.code(),
            "{what}"
        );
    }
    assert!(server.config.writes().is_empty());
    assert!(server.tables.table.writes.is_empty());
    assert!(server.tables.mapped.is_empty(), "nothing newly mapped");
    // The caller's own entry for this device passes.
    assert_eq!(
        program(&mut server, OWNER, msix_request(q35::NVME, 0, 4)),
        0
    );
    // MSI too: the edu's message may only name the edu's IRTE.
    let msi = |handle| MsiProgramRequest {
        kind: 0,
        ..msix_request(q35::EDU, 0, handle)
    };
    server.config.clear_log();
    assert_eq!(
        program(&mut server, OWNER, msi(4)),
        PciError::IrteNotOwned.code()
    );
    assert!(server.config.writes().is_empty());
    assert_eq!(program(&mut server, OWNER, msi(6)), 0);
    assert!(!server.config.writes().is_empty());
}

fn release(server: &mut TestServer, bdf: pci_api::Bdf) -> u32 {
    let request = pci_api::ReleaseRequest {
        bdf,
        reserved: 0,
        owner: OWNER,
    };
    call(server, OWNER, Operation::Release, request.as_bytes())
}

/// Every entry of the nvme's table: masked, address and data zero.
fn assert_clean(server: &TestServer) {
    for entry in 0..65 {
        let read = |register| server.tables.table.read_entry(q35::NVME, entry, register);
        assert_eq!(read(MsixEntryRegister::VectorControl), 1, "entry {entry}");
        assert_eq!(read(MsixEntryRegister::AddressLow), 0, "entry {entry}");
        assert_eq!(read(MsixEntryRegister::AddressHigh), 0, "entry {entry}");
        assert_eq!(read(MsixEntryRegister::Data), 0, "entry {entry}");
    }
}

#[test]
fn a_release_clears_and_unmaps_the_table_and_the_next_claim_starts_clean() {
    let mut server = server(0xfe00_0000);
    claim(&mut server, q35::NVME);
    grant(&mut server, 9, OWNER, q35::NVME);
    assert_eq!(set_command(&mut server, 0x0006), 0);
    assert_eq!(
        program(&mut server, OWNER, msix_request(q35::NVME, 7, 9)),
        0
    );
    assert_eq!(
        server
            .tables
            .read_entry(q35::NVME, 7, MsixEntryRegister::VectorControl),
        0
    );
    // The owner turns memory decoding off before it lets go: the table is cleared anyway.
    assert_eq!(set_command(&mut server, 0x0000), 0);
    assert_eq!(release(&mut server, q35::NVME), 0);
    assert_clean(&server);
    assert_eq!(server.tables.unmapped, vec![q35::NVME]);
    assert_eq!(server.tables.slots.mapped(q35::NVME), None);
    let capability = server
        .inventory
        .get(q35::NVME)
        .unwrap()
        .capabilities
        .msix
        .unwrap();
    let control = server
        .config
        .read16(q35::NVME, capability.offset + msix::CONTROL);
    assert_eq!(control & msix::ENABLE, 0, "MSI-X off");
    // Released: the owner can no longer program or read anything of it.
    assert_eq!(
        program(&mut server, OWNER, msix_request(q35::NVME, 7, 9)),
        PciError::NotOwner.code()
    );
    // Something (a reset method that keeps the table, firmware) leaves an unmasked entry with an
    // old handle behind; the next claim clears it before the owner gets the device.
    server
        .tables
        .table
        .write_entry(q35::NVME, 3, MsixEntryRegister::AddressLow, 0xfee0_0130);
    server
        .tables
        .table
        .write_entry(q35::NVME, 3, MsixEntryRegister::VectorControl, 0);
    let request = ClaimRequest {
        bdf: q35::NVME,
        reserved: 0,
        domain: 4,
    };
    assert_eq!(
        call(&mut server, OWNER, Operation::Claim, request.as_bytes()),
        0
    );
    assert_clean(&server);
    assert!(
        server.tables.slots.mapped(q35::NVME).is_some(),
        "mapped again"
    );
    // A second release, then a claim the IOMMU refuses: nothing stays mapped.
    assert_eq!(release(&mut server, q35::NVME), 0);
    server.iommu.0.refuse = Some(5);
    assert_ne!(
        call(&mut server, OWNER, Operation::Claim, request.as_bytes()),
        0
    );
    assert_eq!(server.tables.slots.mapped(q35::NVME), None);
}

fn msix_read(
    server: &mut TestServer,
    caller: OwnerId,
    structure: u8,
    offset: u32,
) -> Result<u32, u32> {
    let request = pci_api::MsixReadRequest {
        bdf: q35::NVME,
        structure,
        reserved: 0,
        offset,
    };
    let response = server.handle(caller, Operation::MsixRead as u16, request.as_bytes());
    match response.status {
        0 => Ok(u32::from_le_bytes(response.body[..4].try_into().unwrap())),
        code => Err(code),
    }
}

#[test]
fn the_owner_reads_table_and_pending_bits_but_gets_no_page_of_them() {
    let mut server = server(0xfe00_0000);
    claim(&mut server, q35::NVME);
    grant(&mut server, 9, OWNER, q35::NVME);
    assert_eq!(set_command(&mut server, 0x0006), 0);
    assert_eq!(
        program(&mut server, OWNER, msix_request(q35::NVME, 7, 9)),
        0
    );
    // Entry 7: address (remappable, handle 9) and vector control (unmasked).
    assert_eq!(
        msix_read(&mut server, OWNER, 0, 7 * 16),
        Ok(0xfee0_0000 | (9 << 5) | (1 << 4))
    );
    assert_eq!(msix_read(&mut server, OWNER, 0, 7 * 16 + 12), Ok(0));
    assert_eq!(msix_read(&mut server, OWNER, 0, 6 * 16 + 12), Ok(1));
    // Pending bits of entries 32..63 in DWORD 1; 65 entries = 2 QWORDs = 16 bytes.
    server.tables.pending.push((q35::NVME, 1, 0x8000_0001));
    assert_eq!(msix_read(&mut server, OWNER, 1, 4), Ok(0x8000_0001));
    assert_eq!(msix_read(&mut server, OWNER, 1, 0), Ok(0));
    let out = PciError::OffsetOutOfRange.code();
    assert_eq!(msix_read(&mut server, OWNER, 1, 16), Err(out));
    assert_eq!(msix_read(&mut server, OWNER, 0, 65 * 16), Err(out));
    assert_eq!(msix_read(&mut server, OWNER, 0, u32::MAX - 3), Err(out));
    assert_eq!(
        msix_read(&mut server, OTHER, 1, 4),
        Err(PciError::NotOwner.code())
    );
    assert_eq!(
        msix_read(&mut server, OWNER, 1, 2),
        Err(PciError::MisalignedAccess.code())
    );
    // Reads write nothing.
    server.tables.table.writes.clear();
    server.config.clear_log();
    let _ = msix_read(&mut server, OWNER, 0, 0);
    assert!(server.tables.table.writes.is_empty());
    assert!(server.config.writes().is_empty());
    // BAR0 (16 KiB, table at 0x2000, PBA at 0x3000): only its first two pages are handed out.
    let bar = |server: &mut TestServer, part| {
        let request = pci_api::BarRequest {
            bdf: q35::NVME,
            index: 0,
            part,
        };
        server.handle(OWNER, Operation::BarMemory as u16, request.as_bytes())
    };
    let response = bar(&mut server, 0);
    assert_eq!(response.status, 0);
    let reply =
        <pci_api::BarReply as zerocopy::FromBytes>::read_from_bytes(&response.body).unwrap();
    assert_eq!(
        (reply.address, reply.size, reply.capability_size),
        (0xfe60_0000, 0x4000, 0x2000)
    );
    assert_eq!((reply.part_offset, reply.parts), (0, 1));
    assert_eq!(
        bar(&mut server, 1).status,
        PciError::BarPartUnavailable.code()
    );
    // Memory decoding off: the table does not answer, the read is refused.
    assert_eq!(set_command(&mut server, 0x0000), 0);
    assert_eq!(
        msix_read(&mut server, OWNER, 0, 0),
        Err(PciError::MemoryDecodingDisabled.code())
    );
}
