//! The syscall decoder: examples of each kind of refusal, and property tests that throw random
//! registers at it (it never panics; everything it accepts satisfies the argument invariants).

use kernel_objects::decode::DEBUG_WRITE_MAX;
use kernel_objects::{decode, DecodedSyscall, UserSlice, USER_END};
use proptest::prelude::*;
use sluice_abi::syscall::{
    MemoryRights, RawRegisters, Selector, Status, Syscall, ThreadOperation, ALL_RIGHTS_BITS,
    MAX_CPUS, PAGE_SIZE, PRIORITY_LEVELS, REVOKE_INCLUDING_SELF,
};

const SELECTORS: u32 = 64;

fn call(number: Syscall, arguments: [u64; 6]) -> Result<DecodedSyscall, Status> {
    decode(
        &RawRegisters {
            number: number as u64,
            arguments,
        },
        SELECTORS,
    )
}

#[test]
fn examples_of_accepted_calls() {
    assert_eq!(
        call(Syscall::Map, [1, 2, 0x40_0000, 0x1000, 0x2000, 0b011]),
        Ok(DecodedSyscall::Map {
            memory: Selector(1),
            domain: Selector(2),
            range: UserSlice::new_pages(0x40_0000, 0x2000).unwrap(),
            offset: 0x1000,
            rights: MemoryRights::READ | MemoryRights::WRITE,
        })
    );
    assert_eq!(call(Syscall::Yield, [0; 6]), Ok(DecodedSyscall::Yield));
    let thread = call(
        Syscall::CreateThread,
        [0, 5, 0x40_0000, 0x7000_0000, 0x7000_1000, 9 | (2 << 8)],
    );
    match thread {
        Ok(DecodedSyscall::CreateThread { parameters, .. }) => {
            assert_eq!((parameters.priority, parameters.cpu), (9, 2));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn vcpu_exit_state_choices_are_checked() {
    use sluice_abi::vcpu::{Mtd, MAX_EXIT_REASON_CODE, VCPU_SET_EXIT_STATE};
    let set = |reason: u64, groups: u64, spare: u64| {
        call(
            Syscall::VcpuControl,
            [4, VCPU_SET_EXIT_STATE, reason, groups, spare, 0],
        )
    };
    let tables = Mtd::DESCRIPTOR_TABLES | Mtd::SEGMENT_FS_GS;
    assert_eq!(
        set(9, tables.bits(), 0),
        Ok(DecodedSyscall::VcpuSetExitState {
            vcpu: Selector(4),
            reason: 9,
            groups: tables
        })
    );
    assert!(set(0, Mtd::ALL.bits(), 0).is_ok(), "every reason at once");
    assert!(set(u64::from(MAX_EXIT_REASON_CODE), 0, 0).is_ok());
    assert_eq!(
        set(u64::from(MAX_EXIT_REASON_CODE) + 1, 0, 0),
        Err(Status::InvalidArgument),
        "no such exit reason"
    );
    assert_eq!(set(1 << 40, 0, 0), Err(Status::InvalidArgument));
    assert_eq!(
        set(3, Mtd::ALL.bits() + 1, 0),
        Err(Status::InvalidArgument),
        "unknown state-group bit"
    );
    assert_eq!(
        set(3, 0, 1),
        Err(Status::InvalidArgument),
        "unused register set"
    );
}

#[test]
fn interrupt_remap_refusals_are_named() {
    assert_eq!(
        call(Syscall::InterruptRemap, [3, 0xffff, 0, 0, 0, 0]),
        Ok(DecodedSyscall::InterruptRemap {
            interrupt: Selector(3),
            handle: 0xffff
        })
    );
    assert_eq!(
        call(Syscall::InterruptRemap, [3, 0x1_0000, 0, 0, 0, 0]),
        Err(Status::InvalidArgument),
        "an IOAPIC redirection entry holds a 16-bit index"
    );
    assert_eq!(
        call(Syscall::InterruptRemap, [64, 1, 0, 0, 0, 0]),
        Err(Status::InvalidSelector)
    );
    assert_eq!(
        call(Syscall::InterruptRemap, [3, 1, 1, 0, 0, 0]),
        Err(Status::InvalidArgument),
        "unused register set"
    );
    assert_eq!(
        call(Syscall::InterruptRemap, [3, 1, 0, 0, 0, 1 << 63]),
        Err(Status::InvalidArgument)
    );
}

#[test]
fn each_refusal_is_named() {
    assert_eq!(
        decode(
            &RawRegisters {
                number: 99,
                arguments: [0; 6]
            },
            SELECTORS
        ),
        Err(Status::UnknownSyscall)
    );
    assert!(call(Syscall::CreateVm, [0; 6]).is_ok());
    assert_eq!(
        call(Syscall::VcpuControl, [0, 2, 0, 0, 0, 0]),
        Err(Status::InvalidArgument),
        "no vcpu_control operation 2"
    );
    assert_eq!(
        call(Syscall::VmMap, [0, 1, 0x1001, 0, 0x1000, 1]),
        Err(Status::Misaligned)
    );
    assert_eq!(
        call(Syscall::Delete, [64, 0, 0, 0, 0, 0]),
        Err(Status::InvalidSelector)
    );
    assert_eq!(
        call(Syscall::Delete, [1 << 33, 0, 0, 0, 0, 0]),
        Err(Status::InvalidSelector)
    );
    assert_eq!(
        call(Syscall::Delete, [1, 7, 0, 0, 0, 0]),
        Err(Status::InvalidArgument),
        "unused register set"
    );
    assert_eq!(
        call(Syscall::Derive, [1, 2, 1 << 50, 0, 0, 0]),
        Err(Status::InvalidRights)
    );
    assert_eq!(
        call(Syscall::Map, [1, 2, 0x40_0000, 0, 0x1000, 0b010]),
        Err(Status::InvalidRights),
        "write without read"
    );
    assert_eq!(
        call(Syscall::Map, [1, 2, 0x40_0800, 0, 0x1000, 1]),
        Err(Status::Misaligned)
    );
    assert_eq!(
        call(Syscall::Map, [1, 2, 0xffff_8000_0000_0000, 0, 0x1000, 1]),
        Err(Status::BadAddress)
    );
    assert_eq!(
        call(Syscall::Map, [1, 2, USER_END - 0x1000, 0, 0x2000, 1]),
        Err(Status::BadAddress)
    );
    assert_eq!(
        call(Syscall::Map, [1, 2, 0x1000, !0xfff, 0x2000, 1]),
        Err(Status::Overflow)
    );
    assert_eq!(
        call(
            Syscall::DebugWrite,
            [0x1000, DEBUG_WRITE_MAX + 1, 0, 0, 0, 0]
        ),
        Err(Status::Overflow)
    );
    assert_eq!(
        call(Syscall::DebugWrite, [u64::MAX - 3, 2, 0, 0, 0, 0]),
        Err(Status::BadAddress)
    );
    assert_eq!(
        call(Syscall::ThreadControl, [1, 9, 0, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        call(
            Syscall::ThreadControl,
            [1, ThreadOperation::SetPriority as u64, 64, 0, 0, 0]
        ),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        call(
            Syscall::CreateThread,
            [0, 5, 0x40_0000, 0x7000_0000, 0x7000_1010, 0]
        ),
        Err(Status::Misaligned)
    );
    assert_eq!(
        call(
            Syscall::CreateThread,
            [0, 5, 0x40_0000, 0x7000_0000, 0x7000_1000, 1 << 30]
        ),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        call(Syscall::CreateIoRange, [0, 1, 0xfff0, 0x20, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        call(Syscall::Signal, [0, 0, 0, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        call(Syscall::Revoke, [0, 2, 0, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        call(Syscall::Shutdown, [0, 2, 0, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        call(Syscall::CreateProtectionDomain, [1, 0, 1 << 32, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
}

fn interesting_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        // Zero often, so that calls with unused (must-be-zero) registers are accepted too.
        12 => Just(0u64),
        1 => 0u64..80,
        1 => (0u64..0x1_0000).prop_map(|page| page * PAGE_SIZE),
        1 => Just(USER_END - PAGE_SIZE),
        1 => Just(USER_END),
        1 => Just(1u64 << 47),
        1 => Just(0xffff_8000_0000_0000u64),
        1 => Just(u64::MAX),
        1 => (0u64..0x40).prop_map(|bits| bits << 1),
        1 => any::<u64>(),
    ]
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..40, 1 => any::<u64>()]
}

fn check_slice(slice: UserSlice) {
    assert!(slice.base().get() < USER_END);
    assert!(slice.end() <= USER_END);
    assert!(slice.base().get().checked_add(slice.length()).is_some());
}

fn check_pages(slice: UserSlice) {
    check_slice(slice);
    assert_eq!(slice.base().get() % PAGE_SIZE, 0);
    assert_eq!(slice.length() % PAGE_SIZE, 0);
    assert!(slice.length() > 0);
}

fn check_invariants(decoded: &DecodedSyscall, registers: &RawRegisters) {
    let selectors: Vec<Selector> = match *decoded {
        DecodedSyscall::DebugWrite { buffer } => {
            check_slice(buffer);
            assert!(buffer.length() <= DEBUG_WRITE_MAX);
            vec![]
        }
        DecodedSyscall::CreateProtectionDomain {
            destination, name, ..
        } => {
            let length = name.iter().position(|b| *b == 0).unwrap_or(8);
            assert!(name[..length].iter().all(|b| b.is_ascii_graphic()));
            assert!(name[length..].iter().all(|b| *b == 0));
            vec![destination]
        }
        DecodedSyscall::CreateVm { destination } => vec![destination],
        DecodedSyscall::CreateVcpu { vm, destination } => vec![vm, destination],
        DecodedSyscall::VmMap {
            memory,
            vm,
            guest_physical,
            offset,
            size,
            ..
        } => {
            assert_eq!(guest_physical % PAGE_SIZE, 0);
            assert_eq!(offset % PAGE_SIZE, 0);
            assert!(size > 0 && size % PAGE_SIZE == 0);
            vec![memory, vm]
        }
        DecodedSyscall::VcpuRun { vcpu } => vec![vcpu],
        DecodedSyscall::VcpuSetExitState {
            vcpu,
            reason,
            groups,
        } => {
            assert!(reason <= sluice_abi::vcpu::MAX_EXIT_REASON_CODE);
            assert_eq!(groups.bits() & !sluice_abi::vcpu::Mtd::ALL.bits(), 0);
            vec![vcpu]
        }
        DecodedSyscall::Delegate {
            source,
            domain,
            destination,
            rights,
        } => {
            assert_eq!(rights & !ALL_RIGHTS_BITS, 0);
            vec![source, domain, destination]
        }
        DecodedSyscall::CreateThread {
            domain,
            destination,
            parameters,
        } => {
            assert!(parameters.priority < PRIORITY_LEVELS);
            assert!(parameters.cpu < MAX_CPUS);
            assert_eq!(parameters.utcb.get() % PAGE_SIZE, 0);
            for address in [
                parameters.instruction_pointer,
                parameters.stack_pointer,
                parameters.utcb,
            ] {
                assert!(address.get() < USER_END);
            }
            vec![domain, destination]
        }
        DecodedSyscall::CreatePortal {
            handler,
            destination,
            ..
        } => vec![handler, destination],
        DecodedSyscall::CreateNotification { destination } => vec![destination],
        DecodedSyscall::CreateMemory {
            source,
            destination,
            offset,
            size,
        } => {
            assert_eq!(offset % PAGE_SIZE, 0);
            assert_eq!(size % PAGE_SIZE, 0);
            assert!(size > 0 && offset.checked_add(size).is_some());
            vec![source, destination]
        }
        DecodedSyscall::CreateInterrupt {
            source,
            destination,
            notification,
            bit,
            ..
        } => {
            assert!(bit < 64);
            vec![source, destination, notification]
        }
        DecodedSyscall::CreateIoRange {
            source,
            destination,
            first,
            count,
        } => {
            assert!(count > 0 && u32::from(first) + count <= 1 << 16);
            vec![source, destination]
        }
        DecodedSyscall::Derive {
            source,
            destination,
            rights,
        } => {
            assert_eq!(rights & !ALL_RIGHTS_BITS, 0);
            vec![source, destination]
        }
        DecodedSyscall::Revoke { selector, flags } => {
            assert_eq!(flags & !REVOKE_INCLUDING_SELF, 0);
            vec![selector]
        }
        DecodedSyscall::Delete { selector } => vec![selector],
        DecodedSyscall::Map {
            memory,
            domain,
            range,
            offset,
            rights,
        } => {
            check_pages(range);
            assert_eq!(offset % PAGE_SIZE, 0);
            assert!(offset.checked_add(range.length()).is_some());
            assert!(rights.contains(MemoryRights::READ));
            assert!(
                (MemoryRights::READ | MemoryRights::WRITE | MemoryRights::EXECUTE).contains(rights)
            );
            vec![memory, domain]
        }
        DecodedSyscall::Unmap { domain, range } => {
            check_pages(range);
            vec![domain]
        }
        DecodedSyscall::Call { portal } => vec![portal],
        DecodedSyscall::ReplyAndWait | DecodedSyscall::Yield => {
            assert!(registers.arguments.iter().all(|value| *value == 0));
            vec![]
        }
        DecodedSyscall::Signal { notification, bits } => {
            assert_ne!(bits, 0);
            vec![notification]
        }
        DecodedSyscall::Wait { notification, .. } => vec![notification],
        DecodedSyscall::ThreadControl {
            thread,
            operation,
            value,
        } => {
            match operation {
                ThreadOperation::Start | ThreadOperation::Suspend => assert_eq!(value, 0),
                ThreadOperation::SetPriority => assert!(value < u64::from(PRIORITY_LEVELS)),
                ThreadOperation::SetCpu => assert!(value < u64::from(MAX_CPUS)),
            }
            vec![thread]
        }
        DecodedSyscall::Shutdown { domain, .. } => vec![domain],
        DecodedSyscall::MemoryPhysical { memory, .. } => vec![memory],
        DecodedSyscall::InterruptAcknowledge { interrupt } => vec![interrupt],
        DecodedSyscall::InterruptRemap { interrupt, handle } => {
            assert_eq!(u64::from(handle), registers.arguments[1]);
            assert!(registers.arguments[2..].iter().all(|value| *value == 0));
            vec![interrupt]
        }
        DecodedSyscall::IoAllow { io_range, domain } => vec![io_range, domain],
    };
    for selector in selectors {
        assert!(selector.0 < SELECTORS, "selector {selector:?} out of range");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn random_registers_never_panic_and_accepted_calls_hold_their_invariants(
        number in number(),
        arguments in proptest::array::uniform6(interesting_value()),
    ) {
        let registers = RawRegisters { number, arguments };
        let first = decode(&registers, SELECTORS);
        // Decoding is pure: the same registers always decode the same way.
        prop_assert_eq!(first, decode(&registers, SELECTORS));
        match first {
            Ok(decoded) => {
                check_invariants(&decoded, &registers);
                // Re-encoding is not needed: a decoded call's selectors came from the registers.
                prop_assert!(Syscall::try_from(number).is_ok());
            }
            Err(status) => prop_assert_ne!(status, Status::Success),
        }
    }

    #[test]
    fn selectors_at_or_beyond_the_table_are_always_refused(selector in SELECTORS as u64..u64::MAX) {
        for number in [Syscall::Delete, Syscall::Call, Syscall::CreateNotification, Syscall::InterruptAcknowledge, Syscall::InterruptRemap] {
            prop_assert_eq!(call(number, [selector, 0, 0, 0, 0, 0]), Err(Status::InvalidSelector));
        }
    }

    #[test]
    fn interrupt_remap_takes_exactly_a_selector_and_a_16_bit_handle(
        selector in 0u64..SELECTORS as u64,
        handle in any::<u64>(),
        extra in proptest::array::uniform4(any::<u64>()),
    ) {
        let mut arguments = [selector, handle, 0, 0, 0, 0];
        let decoded = call(Syscall::InterruptRemap, arguments);
        if handle <= u64::from(u16::MAX) {
            prop_assert_eq!(decoded, Ok(DecodedSyscall::InterruptRemap {
                interrupt: Selector(selector as u32),
                handle: handle as u16,
            }));
        } else {
            prop_assert_eq!(decoded, Err(Status::InvalidArgument));
        }
        arguments[2..].copy_from_slice(&extra);
        if extra.iter().any(|value| *value != 0) {
            prop_assert!(call(Syscall::InterruptRemap, arguments).is_err());
        }
    }
}

#[test]
fn the_random_register_strategy_reaches_accepted_calls() {
    // Guard against a property test that only ever sees refusals.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (number(), proptest::array::uniform6(interesting_value()));
    let accepted = (0..20_000)
        .filter(|_| {
            let (number, arguments) = strategy.new_tree(&mut runner).unwrap().current();
            decode(&RawRegisters { number, arguments }, SELECTORS).is_ok()
        })
        .count();
    assert!(accepted > 200, "only {accepted} accepted");
}
