//! From the arguments bound from a question to `compute`'s parameters: a number
//! fills one numeric parameter it fits, a string an `(i32 ptr, i32 len)` pair
//! written into the module's memory, a list of numbers one pair.

use wasmtime::{Store, Val, ValType};

use super::{ARGUMENT_AREA_BYTES, Arg, ENTRY, Host, Outcome, TrapKind};

/// Turns the bound arguments into `compute`'s parameters, writing strings into memory.
pub(super) fn bind_params(
    params: &[ValType],
    args: &[Arg],
    store: &mut Store<Host>,
    instance: &wasmtime::Instance,
) -> Result<Vec<Val>, Outcome> {
    let wanted: usize = args
        .iter()
        .map(|a| if matches!(a, Arg::Text(_)) { 2 } else { 1 })
        .sum();
    let mismatch = || {
        let shown: Vec<String> = args.iter().map(ToString::to_string).collect();
        Outcome::Mismatch(format!(
            "`{ENTRY}` takes {} parameter(s) ({}) but the arguments [{}] need {wanted}",
            params.len(),
            params
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            shown.join(", ")
        ))
    };
    if wanted != params.len() {
        return bind_list(params, args, store, instance).ok_or_else(mismatch)?;
    }
    let mut values = Vec::with_capacity(params.len());
    let mut offset = 0usize;
    let mut slots = params.iter();
    for arg in args {
        match arg {
            Arg::Number(n) => {
                let slot = slots.next().ok_or_else(mismatch)?;
                values.push(number_param(*n, slot).ok_or_else(mismatch)?);
            }
            Arg::Text(text) => {
                let (ptr_ty, len_ty) = (
                    slots.next().ok_or_else(mismatch)?,
                    slots.next().ok_or_else(mismatch)?,
                );
                if !matches!(ptr_ty, ValType::I32) || !matches!(len_ty, ValType::I32) {
                    return Err(mismatch());
                }
                let memory = instance.get_memory(&mut *store, "memory").ok_or_else(|| {
                    Outcome::Invalid(
                        "string arguments need an exported memory named `memory`".into(),
                    )
                })?;
                let bytes = text.as_bytes();
                if offset + bytes.len() > ARGUMENT_AREA_BYTES {
                    return Err(Outcome::Mismatch(format!(
                        "string arguments take {} bytes; the argument area holds {ARGUMENT_AREA_BYTES}",
                        offset + bytes.len()
                    )));
                }
                memory
                    .write(&mut *store, offset, bytes)
                    .map_err(|_| Outcome::Trap(TrapKind::Memory))?;
                values.push(Val::I32(offset as i32));
                values.push(Val::I32(bytes.len() as i32));
                offset += bytes.len().next_multiple_of(8);
            }
        }
    }
    Ok(values)
}

/// The list binding, tried when the one-slot-per-argument binding does not fit:
/// `compute` takes `k` numeric parameters and then an `(i32 ptr, i32 len)` pair, and
/// the question binds only numbers, more than `k`. The first `k` numbers fill the
/// scalar slots; the rest are written to memory as consecutive little-endian `f64`s,
/// passed as their address and count. `None` when the shapes do not fit.
fn bind_list(
    params: &[ValType],
    args: &[Arg],
    store: &mut Store<Host>,
    instance: &wasmtime::Instance,
) -> Option<Result<Vec<Val>, Outcome>> {
    let [scalars @ .., ValType::I32, ValType::I32] = params else {
        return None;
    };
    let numbers: Vec<f64> = args
        .iter()
        .map(|a| match a {
            Arg::Number(n) => Some(*n),
            Arg::Text(_) => None,
        })
        .collect::<Option<_>>()?;
    if numbers.len() <= scalars.len() {
        return None;
    }
    let mut values = scalars
        .iter()
        .zip(&numbers)
        .map(|(ty, &n)| number_param(n, ty))
        .collect::<Option<Vec<Val>>>()?;
    let list = &numbers[scalars.len()..];
    let Some(memory) = instance.get_memory(&mut *store, "memory") else {
        return Some(Err(Outcome::Invalid(
            "list arguments need an exported memory named `memory`".into(),
        )));
    };
    if list.len() * 8 > ARGUMENT_AREA_BYTES {
        return Some(Err(Outcome::Mismatch(format!(
            "a list of {} numbers takes {} bytes; the argument area holds {ARGUMENT_AREA_BYTES}",
            list.len(),
            list.len() * 8
        ))));
    }
    let bytes: Vec<u8> = list.iter().flat_map(|v| v.to_le_bytes()).collect();
    if memory.write(&mut *store, 0, &bytes).is_err() {
        return Some(Err(Outcome::Trap(TrapKind::Memory)));
    }
    values.push(Val::I32(0));
    values.push(Val::I32(list.len() as i32));
    Some(Ok(values))
}

/// A wasm number type, as a parameter of `compute` declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumType {
    I32,
    I64,
    F32,
    F64,
}

impl NumType {
    fn of(ty: &ValType) -> Option<NumType> {
        match ty {
            ValType::I32 => Some(NumType::I32),
            ValType::I64 => Some(NumType::I64),
            ValType::F32 => Some(NumType::F32),
            ValType::F64 => Some(NumType::F64),
            _ => None,
        }
    }
}

/// Whether a bound number can fill a parameter of type `ty` (the binding's own rule).
pub fn number_fits(n: f64, ty: NumType) -> bool {
    number_as(n, ty).is_some()
}

fn number_param(n: f64, ty: &ValType) -> Option<Val> {
    number_as(n, NumType::of(ty)?)
}

fn number_as(n: f64, ty: NumType) -> Option<Val> {
    let integral = n.fract() == 0.0 && n.is_finite();
    match ty {
        NumType::F64 => Some(Val::F64(n.to_bits())),
        NumType::F32 => Some(Val::F32((n as f32).to_bits())),
        NumType::I64 if integral && n.abs() < 9.0e15 => Some(Val::I64(n as i64)),
        NumType::I32 if integral && n >= f64::from(i32::MIN) && n <= f64::from(i32::MAX) => {
            Some(Val::I32(n as i32))
        }
        _ => None,
    }
}

