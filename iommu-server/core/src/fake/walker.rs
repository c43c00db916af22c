//! What the hardware does with a request, written independently of the table builders: walk
//! root -> context -> second-level tables for a DMA request, or look up the IRTE for a
//! remappable interrupt. Returns the VT-d fault reason on failure (VT-d spec 7.1.3, 7.1.4).
//! Tests use it to check that tables built by the driver translate as intended.

use crate::memory::PhysMemory;
use iommu_api::{Bdf, HostPhys, IoVirt};

/// Direction of a DMA request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// Device reads memory.
    Read,
    /// Device writes memory.
    Write,
}

/// A remapped interrupt as the unit would deliver it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemappedInterrupt {
    /// IRTE index used.
    pub index: u16,
    /// Vector (IRTE bits 23:16).
    pub vector: u8,
    /// Destination id (IRTE bits 63:32; xAPIC id in bits 47:40).
    pub destination: u32,
    /// Delivery mode (IRTE bits 7:5).
    pub delivery_mode: u8,
    /// Trigger mode level (IRTE bit 4).
    pub level_triggered: bool,
}

fn read_pair<M: PhysMemory>(memory: &M, address: u64) -> (u64, u64) {
    (
        memory.read_u64(HostPhys(address)),
        memory.read_u64(HostPhys(address + 8)),
    )
}

/// Translates a DMA request like the hardware in legacy mode. `Ok` gives the host-physical
/// address; `Err` the fault reason and whether the context entry asked for fault processing
/// to be disabled (FPD).
pub fn translate_dma<M: PhysMemory>(
    memory: &M,
    root_table: HostPhys,
    source: Bdf,
    iova: IoVirt,
    kind: AccessKind,
) -> Result<HostPhys, (u8, bool)> {
    let (root_low, _) = read_pair(memory, root_table.0 + u64::from(source.bus()) * 16);
    if root_low & 1 == 0 {
        return Err((0x1, false));
    }
    let context_table = root_low & !0xfff;
    let (low, high) = read_pair(memory, context_table + u64::from(source.devfn()) * 16);
    if low & 1 == 0 {
        return Err((0x2, false));
    }
    let fault_processing_disable = low & 2 != 0;
    let fail = |reason: u8| Err((reason, fault_processing_disable));
    let levels = match high & 7 {
        1 => 3u32,
        2 => 4,
        3 => 5,
        _ => return fail(0x3),
    };
    match (low >> 2) & 3 {
        0 | 1 => {}
        2 => return Ok(HostPhys(iova.0)),
        _ => return fail(0x3),
    }
    let width = 12 + 9 * levels;
    if iova.0 >> width != 0 {
        return fail(0x4);
    }
    let needed = match kind {
        AccessKind::Read => 1,
        AccessKind::Write => 2,
    };
    let mut table = low & !0xfff;
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (level - 1);
        let entry = memory.read_u64(HostPhys(table + ((iova.0 >> shift) & 0x1ff) * 8));
        if entry & needed == 0 {
            return fail(if kind == AccessKind::Read { 0x6 } else { 0x5 });
        }
        let address = entry & 0x000f_ffff_ffff_f000;
        let is_leaf = level == 1 || entry & (1 << 7) != 0;
        if is_leaf {
            if level > 3 {
                return fail(0xc);
            }
            let output = (address & !((1u64 << shift) - 1)) | (iova.0 & ((1u64 << shift) - 1));
            if (0xfee0_0000..=0xfeef_ffff).contains(&output) {
                return fail(0xe);
            }
            return Ok(HostPhys(output));
        }
        table = address;
    }
    fail(0x7)
}

/// Remaps an interrupt request (a DMA write to 0xFEEx_xxxx) like the hardware (VT-d spec
/// 5.1.4). `table`/`entries` come from the latched IRTA_REG; `compatibility_allowed` is
/// GSTS.CFIS. Errors are interrupt remapping fault reasons (0x20-0x26) with the index; a
/// compatibility-format request passed through because CFIS is set reports reason 0.
pub fn remap_interrupt<M: PhysMemory>(
    memory: &M,
    table: HostPhys,
    entries: u32,
    compatibility_allowed: bool,
    source: Bdf,
    address: u32,
    data: u32,
) -> Result<RemappedInterrupt, (u8, u16)> {
    if address & (1 << 4) == 0 {
        return Err((if compatibility_allowed { 0 } else { 0x25 }, 0));
    }
    let mut index = (address >> 5) & 0x7fff | ((address >> 2) & 1) << 15;
    if address & (1 << 3) != 0 {
        index = index.wrapping_add(data & 0xffff);
    }
    let index16 = index as u16;
    if index >= entries || index > 0xffff {
        return Err((0x21, index16));
    }
    let (low, high) = read_pair(memory, table.0 + u64::from(index) * 16);
    if low & 1 == 0 {
        return Err((0x22, index16));
    }
    if low & (0x7 << 12) != 0 || low & (0xff << 24) != 0 || low & (1 << 15) != 0 || high >> 20 != 0
    {
        return Err((0x24, index16));
    }
    let sid = (high & 0xffff) as u16;
    let qualifier = (high >> 16) & 3;
    let verified = match (high >> 18) & 3 {
        0 => true,
        1 => {
            let ignore: u16 = [0, 0b100, 0b110, 0b111][qualifier as usize];
            (sid & !ignore) == (source.0 & !ignore)
        }
        2 => {
            let (start, end) = ((sid >> 8) as u8, sid as u8);
            (start..=end).contains(&source.bus())
        }
        _ => return Err((0x24, index16)),
    };
    if !verified {
        return Err((0x26, index16));
    }
    Ok(RemappedInterrupt {
        index: index16,
        vector: ((low >> 16) & 0xff) as u8,
        destination: (low >> 32) as u32,
        delivery_mode: ((low >> 5) & 7) as u8,
        level_triggered: low & (1 << 4) != 0,
    })
}
