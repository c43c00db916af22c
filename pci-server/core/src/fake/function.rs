//! One fake function: 4 KiB of config bytes with a writable mask and a write-1-to-clear mask
//! per byte, so BAR sizing, RW1C status bits and read-only fields behave as on hardware, plus
//! builder methods that lay out headers and capability lists the way real devices do.

use crate::registers::{
    acs, advanced_features, capability_id, extended_capability_id, header, msi, msix, pcie,
    power_management, sriov, type0, type1, Status,
};
use crate::CONFIG_SPACE_SIZE;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

const SIZE: usize = CONFIG_SPACE_SIZE as usize;

/// The shape of a fake SR-IOV capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeSriov {
    /// TotalVFs (and InitialVFs).
    pub total_vfs: u16,
    /// First VF Offset.
    pub first_offset: u16,
    /// VF Stride.
    pub stride: u16,
    /// VF Device ID.
    pub vf_device_id: u16,
    /// Address of VF BAR0 (64-bit).
    pub vf_bar_address: u64,
    /// Per-VF size of VF BAR0.
    pub vf_bar_size: u64,
}

/// A fake function's config space and behaviour.
#[derive(Clone, Debug)]
pub struct FakeFunction {
    pub(crate) bytes: Vec<u8>,
    pub(crate) writable: Vec<u8>,
    pub(crate) clear_on_write: Vec<u8>,
    pub(crate) power_on: Option<Vec<u8>>,
    next_capability: u16,
    last_capability: Option<u16>,
    next_extended: u16,
    last_extended: Option<u16>,
    pub(crate) pcie_offset: Option<u16>,
    pub(crate) pm_offset: Option<u16>,
    pub(crate) af_offset: Option<u16>,
    pub(crate) sriov_offset: Option<u16>,
    pub(crate) virtual_function_template: Option<Box<FakeFunction>>,
    /// Reads of Device Status that still report Transactions Pending.
    pub(crate) pending_transaction_reads: core::cell::Cell<u32>,
    /// Resets to perform before config reads answer again (reads return all-ones meanwhile).
    pub(crate) not_ready_reads: core::cell::Cell<u32>,
    pub(crate) not_ready_after_reset: u32,
}

impl FakeFunction {
    fn blank() -> FakeFunction {
        FakeFunction {
            bytes: vec![0; SIZE],
            writable: vec![0; SIZE],
            clear_on_write: vec![0; SIZE],
            power_on: None,
            next_capability: 0x40,
            last_capability: None,
            next_extended: 0x100,
            last_extended: None,
            pcie_offset: None,
            pm_offset: None,
            af_offset: None,
            sriov_offset: None,
            virtual_function_template: None,
            pending_transaction_reads: core::cell::Cell::new(0),
            not_ready_reads: core::cell::Cell::new(0),
            not_ready_after_reset: 0,
        }
    }

    /// A type 0 function with IDs, a 24-bit class code and a revision. Command register bits
    /// I/O, memory, bus master, parity, SERR and INTx disable are writable; status error bits
    /// are RW1C.
    pub fn endpoint(vendor: u16, device: u16, class: u32, revision: u8) -> FakeFunction {
        let mut function = FakeFunction::blank();
        function.put16(header::VENDOR_ID, vendor);
        function.put16(header::DEVICE_ID, device);
        function.put32(header::REVISION, (class << 8) | u32::from(revision));
        function.set_writable16(header::COMMAND, 0x0547);
        function.set_clear_on_write16(header::STATUS, Status::RW1C.bits());
        function.set_writable8(header::CACHE_LINE_SIZE, 0xff);
        function.set_writable8(header::LATENCY_TIMER, 0xff);
        function.set_writable8(header::INTERRUPT_LINE, 0xff);
        function
    }

    /// A type 1 bridge (class 0604) with firmware-assigned bus numbers.
    pub fn bridge(
        vendor: u16,
        device: u16,
        primary: u8,
        secondary: u8,
        subordinate: u8,
    ) -> FakeFunction {
        let mut function = FakeFunction::endpoint(vendor, device, 0x060400, 0);
        function.put8(header::HEADER_TYPE, header::TYPE_BRIDGE);
        function.put8(type1::PRIMARY_BUS, primary);
        function.put8(type1::SECONDARY_BUS, secondary);
        function.put8(type1::SUBORDINATE_BUS, subordinate);
        for offset in [
            type1::PRIMARY_BUS,
            type1::SECONDARY_BUS,
            type1::SUBORDINATE_BUS,
            type1::SECONDARY_LATENCY,
        ] {
            function.set_writable8(offset, 0xff);
        }
        function.set_writable16(type1::IO_BASE, 0xf0f0);
        function.set_clear_on_write16(type1::SECONDARY_STATUS, Status::RW1C.bits());
        function.set_writable32(type1::MEMORY_BASE, 0xfff0_fff0);
        function.set_writable32(type1::PREFETCHABLE_BASE, 0xfff0_fff0);
        function.set_writable32(type1::PREFETCHABLE_BASE_UPPER, 0xffff_ffff);
        function.set_writable32(type1::PREFETCHABLE_LIMIT_UPPER, 0xffff_ffff);
        // Parity, SERR, ISA, VGA, master abort mode, secondary bus reset.
        function.set_writable16(type1::BRIDGE_CONTROL, 0x006f);
        function
    }

    /// Sets the multi-function bit of the header type.
    pub fn multi_function(mut self) -> FakeFunction {
        let value = self.get8(header::HEADER_TYPE) | header::MULTI_FUNCTION;
        self.put8(header::HEADER_TYPE, value);
        self
    }

    /// Sets the subsystem IDs (type 0).
    pub fn subsystem(mut self, vendor: u16, device: u16) -> FakeFunction {
        self.put16(type0::SUBSYSTEM_VENDOR_ID, vendor);
        self.put16(type0::SUBSYSTEM_ID, device);
        self
    }

    /// Sets the command register as firmware left it.
    pub fn command(mut self, value: u16) -> FakeFunction {
        self.put16(header::COMMAND, value);
        self
    }

    /// A 32-bit memory BAR of `size` bytes (a power of two, at least 16) at `address`.
    pub fn memory_bar32(
        mut self,
        index: u8,
        address: u32,
        size: u32,
        prefetchable: bool,
    ) -> FakeFunction {
        let offset = header::BAR0 + 4 * u16::from(index);
        let flags = if prefetchable { 0x8 } else { 0 };
        let mask = !(size.wrapping_sub(1)) & 0xffff_fff0;
        self.put32(offset, (address & mask) | flags);
        self.set_writable32(offset, mask);
        self
    }

    /// A 64-bit memory BAR of `size` bytes at `address`, taking registers `index` and
    /// `index + 1`.
    pub fn memory_bar64(
        mut self,
        index: u8,
        address: u64,
        size: u64,
        prefetchable: bool,
    ) -> FakeFunction {
        let offset = header::BAR0 + 4 * u16::from(index);
        self.write_bar64(offset, address, size, prefetchable);
        self
    }

    pub(crate) fn write_bar64(&mut self, offset: u16, address: u64, size: u64, prefetchable: bool) {
        let flags = 0x4 | if prefetchable { 0x8 } else { 0 };
        let mask = !(size.wrapping_sub(1)) & !0xf;
        self.put32(offset, ((address & mask) as u32) | flags);
        self.set_writable32(offset, mask as u32);
        self.put32(offset + 4, ((address & mask) >> 32) as u32);
        self.set_writable32(offset + 4, (mask >> 32) as u32);
    }

    /// An I/O BAR of `size` ports at `port` (upper 16 bits hard-wired to zero).
    pub fn io_bar(mut self, index: u8, port: u16, size: u16) -> FakeFunction {
        let offset = header::BAR0 + 4 * u16::from(index);
        let mask = u32::from(!(size.wrapping_sub(1)) & 0xfffc);
        self.put32(offset, (u32::from(port) & mask) | 1);
        self.set_writable32(offset, mask);
        self
    }

    /// An expansion ROM of `size` bytes at `address` (enable bit writable).
    pub fn expansion_rom(mut self, address: u32, size: u32) -> FakeFunction {
        let offset = if self.get8(header::HEADER_TYPE) & 0x7f == header::TYPE_BRIDGE {
            type1::EXPANSION_ROM
        } else {
            type0::EXPANSION_ROM
        };
        let mask = !(size.wrapping_sub(1)) & 0xffff_f800;
        self.put32(offset, address & mask);
        self.set_writable32(offset, mask | 1);
        self
    }

    /// Places the next standard capability at `offset` (to mimic a real device's layout).
    pub fn next_capability_at(mut self, offset: u16) -> FakeFunction {
        self.next_capability = offset & 0xfc;
        self
    }

    /// Appends a standard capability of `length` bytes and returns its offset.
    pub fn add_capability(&mut self, id: u8, length: u16) -> u16 {
        let offset = self.next_capability;
        self.put8(offset, id);
        self.put8(offset + 1, 0);
        match self.last_capability {
            None => {
                self.put8(header::CAPABILITIES_POINTER, offset as u8);
                let status = self.get16(header::STATUS) | Status::CAPABILITIES_LIST.bits();
                self.put16(header::STATUS, status);
            }
            Some(previous) => self.put8(previous + 1, offset as u8),
        }
        self.last_capability = Some(offset);
        self.next_capability = (offset + length + 3) & !3;
        offset
    }

    /// Appends an extended capability of `length` bytes and returns its offset.
    pub fn add_extended_capability(&mut self, id: u16, version: u8, length: u16) -> u16 {
        let offset = self.next_extended;
        self.put32(offset, u32::from(id) | (u32::from(version & 0xf) << 16));
        if let Some(previous) = self.last_extended {
            let header = self.get32(previous) & 0x000f_ffff;
            self.put32(previous, header | (u32::from(offset) << 20));
        }
        self.last_extended = Some(offset);
        self.next_extended = (offset + length + 3) & !3;
        offset
    }

    /// Power Management capability, version 3; `no_soft_reset` sets PMCSR No_Soft_Reset.
    pub fn power_management(mut self, no_soft_reset: bool) -> FakeFunction {
        let offset = self.add_capability(capability_id::POWER_MANAGEMENT, 8);
        self.put16(offset + power_management::CAPABILITIES, 0x0003);
        let pmcsr = if no_soft_reset {
            power_management::NO_SOFT_RESET
        } else {
            0
        };
        self.put16(offset + power_management::CONTROL_STATUS, pmcsr);
        self.set_writable16(
            offset + power_management::CONTROL_STATUS,
            power_management::POWER_STATE_MASK | power_management::PME_ENABLE,
        );
        self.set_clear_on_write16(
            offset + power_management::CONTROL_STATUS,
            power_management::PME_STATUS,
        );
        self.pm_offset = Some(offset);
        self
    }

    /// MSI capability with 2^`log2_vectors` vectors.
    pub fn msi(
        mut self,
        log2_vectors: u8,
        address_64: bool,
        per_vector_mask: bool,
    ) -> FakeFunction {
        let mut control = u16::from(log2_vectors & 0x7) << msi::MULTIPLE_MESSAGE_CAPABLE_SHIFT;
        if address_64 {
            control |= msi::ADDRESS_64;
        }
        if per_vector_mask {
            control |= msi::PER_VECTOR_MASK;
        }
        let length = match (address_64, per_vector_mask) {
            (false, false) => 0x0a,
            (true, false) => 0x0e,
            (false, true) => 0x14,
            (true, true) => 0x18,
        };
        let offset = self.add_capability(capability_id::MSI, length);
        self.put16(offset + msi::CONTROL, control);
        self.set_writable16(
            offset + msi::CONTROL,
            msi::ENABLE | (0x7 << msi::MULTIPLE_MESSAGE_ENABLE_SHIFT),
        );
        self.set_writable32(offset + msi::ADDRESS_LOW, 0xffff_fffc);
        let data = if address_64 {
            self.set_writable32(offset + msi::ADDRESS_HIGH, 0xffff_ffff);
            offset + 0x0c
        } else {
            offset + 0x08
        };
        self.set_writable16(data, 0xffff);
        if per_vector_mask {
            let vectors = 1u32 << log2_vectors.min(5);
            let mask = if vectors >= 32 {
                u32::MAX
            } else {
                (1 << vectors) - 1
            };
            self.set_writable32(data + 4, mask);
        }
        self
    }

    /// MSI-X capability with `entries` vectors; table and PBA in BARs `table_bir`/`pba_bir`.
    pub fn msix(
        mut self,
        entries: u16,
        table_bir: u8,
        table_offset: u32,
        pba_bir: u8,
        pba_offset: u32,
    ) -> FakeFunction {
        let offset = self.add_capability(capability_id::MSIX, 12);
        self.put16(
            offset + msix::CONTROL,
            entries.saturating_sub(1) & msix::TABLE_SIZE_MASK,
        );
        self.set_writable16(offset + msix::CONTROL, msix::ENABLE | msix::FUNCTION_MASK);
        self.put32(
            offset + msix::TABLE,
            (table_offset & !7) | u32::from(table_bir & 7),
        );
        self.put32(
            offset + msix::PBA,
            (pba_offset & !7) | u32::from(pba_bir & 7),
        );
        self
    }

    /// PCI Express capability, version 2, with the given port type field and FLR capability.
    /// Downstream and root ports advertise ARI forwarding.
    pub fn pcie(mut self, port_type: u8, flr: bool) -> FakeFunction {
        // A version 2 structure is 0x3c bytes; where that does not fit below 0x100 (the
        // 82574L's sits at 0xe0), use the version 1 endpoint layout of 0x14 bytes.
        let version2 = self.next_capability + 0x3c <= 0x100;
        let length = if version2 { 0x3c } else { 0x14 };
        let offset = self.add_capability(capability_id::PCI_EXPRESS, length);
        let version: u16 = if version2 { 2 } else { 1 };
        self.put16(
            offset + pcie::CAPABILITIES,
            version | (u16::from(port_type & 0xf) << pcie::PORT_TYPE_SHIFT),
        );
        // Max payload 256 bytes, extended tags.
        let mut device_capabilities = 0x0000_0021;
        if flr {
            device_capabilities |= pcie::DEVICE_CAPABILITIES_FLR;
        }
        self.put32(offset + pcie::DEVICE_CAPABILITIES, device_capabilities);
        // Device Control: everything writable; Initiate FLR is handled by the fake space.
        self.set_writable16(
            offset + pcie::DEVICE_CONTROL,
            0x7fff
                | if flr {
                    pcie::DEVICE_CONTROL_INITIATE_FLR
                } else {
                    0
                },
        );
        self.put16(offset + pcie::DEVICE_CONTROL, 0x2810);
        self.set_clear_on_write16(offset + pcie::DEVICE_STATUS, 0x000f);
        self.set_writable16(offset + pcie::LINK_CONTROL, 0x0ffb);
        if version2 {
            let mut capabilities_2 = 0x0000_001f;
            if port_type == 0x4 || port_type == 0x6 {
                capabilities_2 |= pcie::DEVICE_CAPABILITIES_2_ARI_FORWARDING;
            }
            self.put32(offset + pcie::DEVICE_CAPABILITIES_2, capabilities_2);
            self.set_writable16(offset + pcie::DEVICE_CONTROL_2, 0x073f);
        }
        self.pcie_offset = Some(offset);
        self
    }

    /// Advanced Features capability (AF FLR).
    pub fn advanced_features(mut self, flr: bool) -> FakeFunction {
        let offset = self.add_capability(capability_id::ADVANCED_FEATURES, 6);
        self.put8(offset + 2, 6);
        let capabilities = advanced_features::CAP_TRANSACTIONS_PENDING
            | if flr { advanced_features::CAP_FLR } else { 0 };
        self.put8(offset + advanced_features::CAPABILITIES, capabilities);
        if flr {
            self.set_writable8(
                offset + advanced_features::CONTROL,
                advanced_features::CONTROL_INITIATE_FLR,
            );
        }
        self.af_offset = Some(offset);
        self
    }

    /// A vendor-specific capability of `length` bytes.
    pub fn vendor_specific(mut self, length: u8) -> FakeFunction {
        let offset = self.add_capability(capability_id::VENDOR_SPECIFIC, u16::from(length.max(3)));
        self.put8(offset + 2, length);
        self
    }

    /// ACS with the given capability bits; the control bits start as firmware left them and
    /// the implemented ones are writable.
    pub fn acs(mut self, capability: u16, control: u16) -> FakeFunction {
        let offset = self.add_extended_capability(extended_capability_id::ACS, 1, 8);
        self.put16(offset + acs::CAPABILITY, capability);
        self.put16(offset + acs::CONTROL, control & capability);
        self.set_writable16(offset + acs::CONTROL, capability & 0x7f);
        self
    }

    /// ARI capability with the given Next Function Number.
    pub fn ari(mut self, next_function: u8) -> FakeFunction {
        let offset = self.add_extended_capability(extended_capability_id::ARI, 1, 8);
        self.put16(offset + 4, u16::from(next_function) << 8);
        self
    }

    /// AER capability (status RW1C, masks and severity writable).
    pub fn aer(mut self) -> FakeFunction {
        let offset = self.add_extended_capability(extended_capability_id::AER, 2, 0x48);
        self.set_clear_on_write32(offset + 0x04, 0xffff_ffff);
        self.set_writable32(offset + 0x08, 0xffff_ffff);
        self.set_writable32(offset + 0x0c, 0xffff_ffff);
        self.put32(offset + 0x0c, 0x0046_2030);
        self.set_clear_on_write32(offset + 0x10, 0xffff_ffff);
        self.set_writable32(offset + 0x14, 0xffff_ffff);
        self.put32(offset + 0x14, 0x0000_2000);
        self
    }

    /// Device Serial Number capability.
    pub fn serial_number(mut self, serial: u64) -> FakeFunction {
        let offset =
            self.add_extended_capability(extended_capability_id::DEVICE_SERIAL_NUMBER, 1, 0x0c);
        self.put32(offset + 4, serial as u32);
        self.put32(offset + 8, (serial >> 32) as u32);
        self
    }

    /// A vendor-specific extended capability of `length` bytes.
    pub fn vendor_specific_extended(mut self, length: u16) -> FakeFunction {
        let _ = self.add_extended_capability(extended_capability_id::VENDOR_SPECIFIC, 1, length);
        self
    }

    /// SR-IOV capability as `shape` describes, with the template each VF is made from when
    /// VF Enable is set.
    pub fn sriov(mut self, shape: FakeSriov, template: FakeFunction) -> FakeFunction {
        let FakeSriov {
            total_vfs,
            first_offset,
            stride,
            vf_device_id,
            vf_bar_address,
            vf_bar_size,
        } = shape;
        let offset = self.add_extended_capability(extended_capability_id::SRIOV, 1, 0x40);
        self.put16(offset + sriov::INITIAL_VFS, total_vfs);
        self.put16(offset + sriov::TOTAL_VFS, total_vfs);
        self.put16(offset + sriov::FIRST_VF_OFFSET, first_offset);
        self.put16(offset + sriov::VF_STRIDE, stride);
        self.put16(offset + sriov::VF_DEVICE_ID, vf_device_id);
        self.put32(offset + sriov::SUPPORTED_PAGE_SIZES, 0x553);
        self.put32(offset + sriov::SYSTEM_PAGE_SIZE, 1);
        self.set_writable32(offset + sriov::SYSTEM_PAGE_SIZE, 0xffff_ffff);
        self.set_writable16(offset + sriov::CONTROL, 0x001f);
        self.set_writable16(offset + sriov::NUM_VFS, 0xffff);
        self.write_bar64(offset + sriov::VF_BAR0, vf_bar_address, vf_bar_size, false);
        self.sriov_offset = Some(offset);
        self.virtual_function_template = Some(Box::new(template));
        self
    }

    /// The Device Status register reports Transactions Pending for the next `reads` reads.
    pub fn transactions_pending_for(self, reads: u32) -> FakeFunction {
        self.pending_transaction_reads.set(reads);
        self
    }

    /// After each reset, config reads return all-ones for `reads` reads.
    pub fn not_ready_after_reset(mut self, reads: u32) -> FakeFunction {
        self.not_ready_after_reset = reads;
        self
    }

    /// Raw bytes, for malformed layouts (no mask change).
    pub fn raw(mut self, offset: u16, bytes: &[u8]) -> FakeFunction {
        for (i, byte) in bytes.iter().enumerate() {
            self.put8(offset.saturating_add(i as u16), *byte);
        }
        self
    }

    /// Raw writable mask, for odd BARs.
    pub fn raw_writable32(mut self, offset: u16, mask: u32) -> FakeFunction {
        self.set_writable32(offset, mask);
        self
    }

    // Byte helpers; out-of-range offsets are ignored.

    pub(crate) fn get8(&self, offset: u16) -> u8 {
        self.bytes.get(usize::from(offset)).copied().unwrap_or(0xff)
    }

    pub(crate) fn get16(&self, offset: u16) -> u16 {
        u16::from(self.get8(offset)) | (u16::from(self.get8(offset.wrapping_add(1))) << 8)
    }

    pub(crate) fn get32(&self, offset: u16) -> u32 {
        u32::from(self.get16(offset)) | (u32::from(self.get16(offset.wrapping_add(2))) << 16)
    }

    pub(crate) fn put8(&mut self, offset: u16, value: u8) {
        if let Some(byte) = self.bytes.get_mut(usize::from(offset)) {
            *byte = value;
        }
    }

    pub(crate) fn put16(&mut self, offset: u16, value: u16) {
        self.put8(offset, value as u8);
        self.put8(offset.wrapping_add(1), (value >> 8) as u8);
    }

    pub(crate) fn put32(&mut self, offset: u16, value: u32) {
        self.put16(offset, value as u16);
        self.put16(offset.wrapping_add(2), (value >> 16) as u16);
    }

    fn set_mask(mask: &mut [u8], offset: u16, value: u32, bytes: u16) {
        for i in 0..bytes {
            if let Some(byte) = mask.get_mut(usize::from(offset.wrapping_add(i))) {
                *byte = (value >> (8 * i)) as u8;
            }
        }
    }

    pub(crate) fn set_writable8(&mut self, offset: u16, mask: u8) {
        Self::set_mask(&mut self.writable, offset, u32::from(mask), 1);
    }

    pub(crate) fn set_writable16(&mut self, offset: u16, mask: u16) {
        Self::set_mask(&mut self.writable, offset, u32::from(mask), 2);
    }

    pub(crate) fn set_writable32(&mut self, offset: u16, mask: u32) {
        Self::set_mask(&mut self.writable, offset, mask, 4);
    }

    pub(crate) fn set_clear_on_write16(&mut self, offset: u16, mask: u16) {
        Self::set_mask(&mut self.clear_on_write, offset, u32::from(mask), 2);
    }

    pub(crate) fn set_clear_on_write32(&mut self, offset: u16, mask: u32) {
        Self::set_mask(&mut self.clear_on_write, offset, mask, 4);
    }

    /// Applies a write the way hardware does: writable bits take the new value, RW1C bits
    /// written as 1 clear, everything else keeps its value.
    pub(crate) fn apply_write(&mut self, offset: u16, bytes: u16, value: u32) {
        for i in 0..bytes {
            let at = usize::from(offset.wrapping_add(i));
            let new = (value >> (8 * i)) as u8;
            let (Some(old), Some(writable), Some(clear)) = (
                self.bytes.get(at).copied(),
                self.writable.get(at).copied(),
                self.clear_on_write.get(at).copied(),
            ) else {
                continue;
            };
            let mut result = (old & !writable) | (new & writable);
            result &= !(new & clear);
            if let Some(byte) = self.bytes.get_mut(at) {
                *byte = result;
            }
        }
    }

    /// Snapshot of the state a reset returns to.
    pub(crate) fn freeze_power_on_state(&mut self) {
        if self.power_on.is_none() {
            self.power_on = Some(self.bytes.clone());
        }
    }

    /// Returns to the power-on state.
    pub(crate) fn reset_to_power_on(&mut self) {
        if let Some(state) = &self.power_on {
            self.bytes.clone_from(state);
        }
        self.not_ready_reads.set(self.not_ready_after_reset);
    }
}
