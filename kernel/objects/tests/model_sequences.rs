//! Random sequences of create / derive / delegate / map / revoke / delete, checked after every
//! step against the model's invariants: no capability names a freed object, object capability
//! counts are exact, derivation links are consistent, a refused operation changes nothing,
//! revocation leaves no descendant anywhere, and quotas match what is charged. At the end,
//! deleting every capability frees every object and balances every quota to zero.

mod common;

use std::collections::HashMap;

use common::*;
use kernel_objects::{
    object_charge, CapabilityAddress, Object, ObjectId, Resources, UserSlice, MAPPING_CHARGE,
};
use proptest::prelude::*;
use sluice_abi::ipc::{ReceiveWindow, TransferItem};
use sluice_abi::syscall::{MemoryRights, Selector, Status, PAGE_SIZE, REVOKE_INCLUDING_SELF};

#[derive(Clone, Debug)]
enum Operation {
    CreateDomain {
        selector: u32,
    },
    CreateNotification {
        domain: usize,
        selector: u32,
    },
    CarveMemory {
        domain: usize,
        source: u32,
        selector: u32,
        page: u64,
        pages: u64,
    },
    Derive {
        domain: usize,
        source: u32,
        destination: u32,
        rights: u64,
    },
    Transfer {
        from: usize,
        to: usize,
        source: u32,
        destination: u32,
        rights: u64,
    },
    Map {
        domain: usize,
        memory: u32,
        target: u32,
        page: u64,
    },
    Revoke {
        domain: usize,
        selector: u32,
        including_self: bool,
    },
    Delete {
        domain: usize,
        selector: u32,
    },
}

fn selector() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..12, 1 => 0u32..40]
}

fn operation() -> impl Strategy<Value = Operation> {
    let domain = 0usize..4;
    let rights = prop_oneof![Just(u64::MAX), 0u64..64];
    prop_oneof![
        (2u32..12).prop_map(|selector| Operation::CreateDomain { selector }),
        (domain.clone(), selector())
            .prop_map(|(domain, selector)| Operation::CreateNotification { domain, selector }),
        (domain.clone(), selector(), selector(), 0u64..70, 0u64..4).prop_map(
            |(domain, source, selector, page, pages)| Operation::CarveMemory {
                domain,
                source,
                selector,
                page,
                pages
            }
        ),
        (domain.clone(), selector(), selector(), rights.clone()).prop_map(
            |(domain, source, destination, rights)| Operation::Derive {
                domain,
                source,
                destination,
                rights
            }
        ),
        (
            domain.clone(),
            domain.clone(),
            selector(),
            selector(),
            rights
        )
            .prop_map(
                |(from, to, source, destination, rights)| Operation::Transfer {
                    from,
                    to,
                    source,
                    destination,
                    rights
                }
            ),
        (domain.clone(), selector(), selector(), 0u64..8).prop_map(
            |(domain, memory, target, page)| Operation::Map {
                domain,
                memory,
                target,
                page
            }
        ),
        (domain.clone(), selector(), any::<bool>()).prop_map(
            |(domain, selector, including_self)| Operation::Revoke {
                domain,
                selector,
                including_self
            }
        ),
        (domain, selector()).prop_map(|(domain, selector)| Operation::Delete { domain, selector }),
    ]
}

/// Capabilities derived (directly or not) from `address`.
fn descendants(model: &Model, address: CapabilityAddress) -> Vec<CapabilityAddress> {
    let mut found = Vec::new();
    let mut stack = vec![address];
    while let Some(current) = stack.pop() {
        let mut child = model
            .capability_at(current)
            .and_then(|node| node.first_child);
        while let Some(address) = child {
            found.push(address);
            stack.push(address);
            child = model
                .capability_at(address)
                .and_then(|node| node.next_sibling);
        }
    }
    found
}

fn check_invariants(model: &Model) {
    let mut counts: HashMap<ObjectId, u32> = HashMap::new();
    for (address, node) in model.capabilities() {
        let entry = model
            .object(node.capability.object)
            .unwrap_or_else(|| panic!("dangling capability at {address:?}"));
        assert_eq!(entry.object.object_type(), node.capability.object_type);
        assert_eq!(
            node.capability.rights & !node.capability.object_type.valid_rights(),
            0
        );
        *counts.entry(node.capability.object).or_default() += 1;
        if let Some(parent) = node.parent {
            let parent_node = model.capability_at(parent).expect("parent exists");
            assert_eq!(
                parent_node.capability.object_type,
                node.capability.object_type
            );
            let mut child = parent_node.first_child;
            let mut listed = false;
            while let Some(current) = child {
                listed |= current == address;
                child = model.capability_at(current).and_then(|n| n.next_sibling);
            }
            assert!(listed, "child {address:?} missing from its parent's list");
        }
    }
    let mut charged: HashMap<ObjectId, Resources> = HashMap::new();
    for (id, entry) in model.objects().iter() {
        assert_eq!(
            entry.capabilities,
            counts.get(&id).copied().unwrap_or(0),
            "count of {id:?}"
        );
        if let Some(payer) = entry.payer {
            let sum = charged.entry(payer).or_default();
            *sum = sum.checked_add(entry.charge).unwrap();
        }
    }
    let mut mappings_charged = 0u64;
    for (id, entry) in model.objects().iter() {
        if let Object::ProtectionDomain(pd) = entry.object {
            let used = pd.quota.used();
            let objects = charged.get(&id).copied().unwrap_or_default();
            assert_eq!(used.bytes, objects.bytes, "bytes of {id:?}");
            assert_eq!(used.objects, objects.objects, "objects of {id:?}");
            assert!(used.fits_within(pd.quota.limit()));
            // Mapping quota: donations to child domains plus the mapping records it made.
            mappings_charged += u64::from(used.mappings - objects.mappings);
        }
    }
    assert_eq!(mappings_charged, model.mapping_count() as u64);
}

fn apply(model: &mut Model, domains: &mut Vec<ObjectId>, operation: &Operation) {
    let pick = |index: usize| domains[index % domains.len()];
    // The root deleting its own capability to itself destroys it (allowed, tested elsewhere);
    // this test keeps the root alive to check the final balance.
    let root_suicide = match *operation {
        Operation::Delete { domain, selector } => pick(domain) == domains[0] && selector == 0,
        Operation::Revoke {
            domain,
            selector,
            including_self,
        } => including_self && pick(domain) == domains[0] && selector == 0,
        _ => false,
    };
    if root_suicide {
        return;
    }
    let before = model.clone();
    let mut sink = Recorder::default();
    let mut revoked = None;
    let result: Result<(), Status> = match *operation {
        Operation::CreateDomain { selector } => {
            let limit = Resources {
                bytes: 1 << 20,
                objects: 6,
                mappings: 3,
            };
            model
                .create_domain(domains[0], Selector(selector), limit, 0b1)
                .map(|id| domains.push(id))
        }
        Operation::CreateNotification { domain, selector } => model
            .create_notification(pick(domain), Selector(selector))
            .map(|_| ()),
        Operation::CarveMemory {
            domain,
            source,
            selector,
            page,
            pages,
        } => model
            .create_memory(
                pick(domain),
                Selector(source),
                Selector(selector),
                page * PAGE_SIZE,
                pages * PAGE_SIZE,
            )
            .map(|_| ()),
        Operation::Derive {
            domain,
            source,
            destination,
            rights,
        } => model.derive(
            pick(domain),
            Selector(source),
            Selector(destination),
            rights,
        ),
        Operation::Transfer {
            from,
            to,
            source,
            destination,
            rights,
        } => {
            let item = TransferItem {
                selector: source,
                destination,
                rights,
            };
            let window = ReceiveWindow { base: 0, count: 32 };
            model.transfer(pick(from), pick(to), &[item], window)
        }
        Operation::Map {
            domain,
            memory,
            target,
            page,
        } => {
            let range = UserSlice::new_pages(0x40_0000 + page * PAGE_SIZE, PAGE_SIZE).unwrap();
            model
                .map(
                    pick(domain),
                    Selector(memory),
                    Selector(target),
                    range,
                    0,
                    MemoryRights::READ,
                    |_| Ok(()),
                )
                .map(|_| ())
        }
        Operation::Revoke {
            domain,
            selector,
            including_self,
        } => {
            let caller = pick(domain);
            if let Ok((address, _)) = model.lookup_any(caller, Selector(selector)) {
                revoked = Some((address, descendants(model, address), including_self));
            }
            let flags = if including_self {
                REVOKE_INCLUDING_SELF
            } else {
                0
            };
            model.revoke(caller, Selector(selector), flags, &mut sink)
        }
        Operation::Delete { domain, selector } => {
            model.delete(pick(domain), Selector(selector), &mut sink)
        }
    };
    match result {
        Err(status) => {
            assert_ne!(status, Status::Success);
            assert!(
                *model == before,
                "refused {operation:?} ({status:?}) changed the model"
            );
        }
        Ok(()) => {
            if let Some((address, gone, including_self)) = revoked {
                for address in gone {
                    assert!(
                        model.capability_at(address).is_none(),
                        "descendant survived revoke"
                    );
                }
                if including_self {
                    assert!(model.capability_at(address).is_none());
                } else if let Some(node) = model.capability_at(address) {
                    assert!(node.first_child.is_none());
                }
            }
        }
    }
    check_invariants(model);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_sequences_keep_invariants_and_balance_to_zero(
        operations in proptest::collection::vec(operation(), 1..60)
    ) {
        let (mut model, root) = boot();
        let mut domains = vec![root];
        let initial_objects = model.objects().len();
        for operation in &operations {
            apply(&mut model, &mut domains, operation);
        }
        // Delete every capability everywhere except the root's capability to itself.
        let mut sink = Recorder::default();
        loop {
            let next = model
                .capabilities()
                .map(|(address, node)| (address, node.capability))
                .find(|(_, capability)| capability.object != root);
            let Some((address, _)) = next else { break };
            let owner = model
                .objects()
                .iter()
                .find_map(|(id, entry)| match entry.object {
                    Object::ProtectionDomain(pd) if pd.table == address.table => Some(id),
                    _ => None,
                })
                .expect("table has an owner");
            model.delete(owner, Selector(address.slot), &mut sink).unwrap();
            check_invariants(&model);
        }
        prop_assert_eq!(model.objects().len(), initial_objects - 1, "only the root is left");
        prop_assert!(model.quota(root).unwrap().used().is_zero());
        prop_assert_eq!(model.mapping_count(), 0);
        let _ = (object_charge, MAPPING_CHARGE);
    }
}
