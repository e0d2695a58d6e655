//! Imported record batches handed to DuckDB as a table function, `netlens_rows(token)`, which
//! an `INSERT ... SELECT` reads: the import's store path.
//!
//! Why not duckdb-rs's appender: it converts every Arrow value through a C call (each string
//! copied into the chunk's heap), and DuckDB's appender copies the chunk once more into a
//! collection before its flush inserts it. Here fixed-width columns are one copy per vector and
//! a string longer than DuckDB's inline size is a pointer into the Arrow buffer (the batches
//! stay alive in the scan's bind data until the statement ends), so the only copy of a string is
//! the one the insert makes into the table. DuckDB's own Arrow scan (`duckdb_arrow_scan`) would
//! do the same, but it needs the raw connection, which duckdb-rs does not expose.
//!
//! The batches reach the function through a process-wide registry keyed by a token that is
//! registered only while its `INSERT` runs ([`Registered`]); an unknown token is an error, never
//! a dangling pointer, so a client calling the function by hand gets nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use duckdb::arrow::array::{Array, AsArray, BooleanArray, ListArray, StringArray};
use duckdb::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::{DataChunkHandle, FlatVector, Inserter, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{to_duckdb_logical_type_for_field, BindInfo, InitInfo, TableFunctionInfo, VTab};
use duckdb::Connection;

/// The table function's name.
pub const FUNCTION: &str = "netlens_rows";

type BoxError = Box<dyn std::error::Error>;

fn registry() -> MutexGuard<'static, HashMap<u64, Vec<RecordBatch>>> {
    static REGISTRY: LazyLock<Mutex<HashMap<u64, Vec<RecordBatch>>>> = LazyLock::new(Default::default);
    // A poisoned registry only means a thread panicked while holding it; the map itself is
    // always whole (inserts and removes are single calls).
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Batches readable through `netlens_rows(token)` for as long as this lives.
pub struct Registered {
    pub token: u64,
}

impl Registered {
    pub fn new(batches: Vec<RecordBatch>) -> Registered {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let token = NEXT.fetch_add(1, Ordering::Relaxed);
        registry().insert(token, batches);
        Registered { token }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        registry().remove(&self.token);
    }
}

/// Registers the table function on a new database instance (its system catalog, which every
/// connection of the instance shares). Done where the instance is opened, outside any
/// transaction: registering a name twice fails, and a failure inside a transaction would
/// invalidate it.
pub fn register(conn: &Connection) -> duckdb::Result<()> {
    conn.register_table_function::<RowsScan>(FUNCTION)
}

pub struct RowsScan;

pub struct Bound {
    batches: Vec<RecordBatch>,
}

/// Where the scan is: batch index and row within it.
pub struct Position(Mutex<(usize, usize)>);

impl VTab for RowsScan {
    type InitData = Position;
    type BindData = Bound;

    fn bind(bind: &BindInfo) -> Result<Bound, BoxError> {
        let token = bind.get_parameter(0).to_uint64();
        let batches = registry()
            .get(&token)
            .cloned()
            .ok_or_else(|| format!("{FUNCTION}: no rows registered under {token}"))?;
        let Some(first) = batches.first() else {
            return Err(format!("{FUNCTION}: no batches under {token}").into());
        };
        let schema = first.schema();
        let same = |a: &duckdb::arrow::datatypes::Field, b: &duckdb::arrow::datatypes::Field| {
            a.name() == b.name() && a.data_type().equals_datatype(b.data_type())
        };
        for b in &batches {
            let other = b.schema();
            if other.fields().len() != schema.fields().len()
                || !other.fields().iter().zip(schema.fields()).all(|(a, b)| same(a, b))
            {
                return Err(format!("{FUNCTION}: batches of different columns under {token}").into());
            }
        }
        for field in schema.fields() {
            supported(field.data_type())?;
            bind.add_result_column(field.name(), to_duckdb_logical_type_for_field(field)?);
        }
        Ok(Bound { batches })
    }

    fn init(_: &InitInfo) -> Result<Position, BoxError> {
        Ok(Position(Mutex::new((0, 0))))
    }

    fn func(func: &TableFunctionInfo<Self>, output: &mut DataChunkHandle) -> Result<(), BoxError> {
        let batches = &func.get_bind_data().batches;
        let mut at = func.get_init_data().0.lock().unwrap_or_else(|p| p.into_inner());
        while at.0 < batches.len() && at.1 >= batches[at.0].num_rows() {
            *at = (at.0 + 1, 0);
        }
        let Some(batch) = batches.get(at.0) else {
            output.set_len(0);
            return Ok(());
        };
        let capacity = output.flat_vector(0).capacity();
        let n = capacity.min(batch.num_rows() - at.1);
        let slice = batch.slice(at.1, n);
        for (i, column) in slice.columns().iter().enumerate() {
            write_column(column.as_ref(), output, i)?;
        }
        output.set_len(n);
        at.1 += n;
        Ok(())
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![LogicalTypeHandle::from(LogicalTypeId::UBigint)])
    }
}

fn supported(t: &DataType) -> Result<(), BoxError> {
    match t {
        DataType::Int64 | DataType::Int32 | DataType::Float64 | DataType::Boolean | DataType::Utf8 => Ok(()),
        DataType::Timestamp(TimeUnit::Microsecond, None) => Ok(()),
        DataType::List(f) if f.data_type() == &DataType::Utf8 => Ok(()),
        other => Err(format!("{FUNCTION}: column type {other} is not supported").into()),
    }
}

/// Copies a fixed-width column's values into the vector in one go.
fn copy_values<T: Copy>(values: &[T], out: &mut FlatVector<'_>) {
    // SAFETY: the vector holds `capacity` values of the column's type, which `bind` declared
    // from the same Arrow type (T is its native type); `values` is at most one vector long.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out.as_mut_ptr::<T>(), values.len()) };
}

fn set_nulls(array: &dyn Array, out: &mut FlatVector<'_>) {
    if let Some(nulls) = array.logical_nulls() {
        if nulls.null_count() > 0 {
            for i in 0..array.len() {
                if nulls.is_null(i) {
                    out.set_null(i);
                }
            }
        }
    }
}

/// DuckDB's `string_t`: 4 bytes of length, then the string itself when it fits in 12 bytes
/// (zero-padded: DuckDB compares inline strings by all 16 bytes), else its first 4 bytes and a
/// pointer to the whole.
fn string_t(s: &[u8]) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..4].copy_from_slice(&(s.len() as u32).to_le_bytes());
    if s.len() <= 12 {
        v[4..4 + s.len()].copy_from_slice(s);
    } else {
        v[4..8].copy_from_slice(&s[..4]);
        v[8..].copy_from_slice(&(s.as_ptr() as usize).to_ne_bytes());
    }
    v
}

fn write_strings(array: &StringArray, out: &mut FlatVector<'_>) -> Result<(), BoxError> {
    if array.value_data().len() > u32::MAX as usize {
        return Err(format!("{FUNCTION}: a string column over 4 GiB").into());
    }
    // SAFETY: a VARCHAR vector's data is `capacity` 16-byte `string_t`s; the strings pointed to
    // live in `array`'s buffer, which the bind data holds until the statement has ended, and
    // the insert copies every string into the table before that.
    let target = unsafe { out.as_mut_ptr::<[u8; 16]>() };
    for (i, s) in array.iter().enumerate() {
        let v = string_t(s.unwrap_or_default().as_bytes());
        unsafe { target.add(i).write(v) };
    }
    set_nulls(array, out);
    Ok(())
}

fn write_column(column: &dyn Array, output: &mut DataChunkHandle, i: usize) -> Result<(), BoxError> {
    match column.data_type() {
        DataType::List(_) => return write_string_lists(column.as_list::<i32>(), output, i),
        DataType::Utf8 => return write_strings(column.as_string::<i32>(), &mut output.flat_vector(i)),
        _ => {}
    }
    let mut out = output.flat_vector(i);
    match column.data_type() {
        DataType::Int64 => copy_values(column.as_primitive::<Int64Type>().values(), &mut out),
        DataType::Int32 => copy_values(column.as_primitive::<Int32Type>().values(), &mut out),
        DataType::Float64 => copy_values(column.as_primitive::<Float64Type>().values(), &mut out),
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            copy_values(column.as_primitive::<TimestampMicrosecondType>().values(), &mut out)
        }
        DataType::Boolean => {
            let b: &BooleanArray = column.as_boolean();
            // SAFETY: DuckDB's BOOLEAN is one byte, 0 or 1.
            let target = unsafe { out.as_mut_ptr::<u8>() };
            for j in 0..b.len() {
                unsafe { target.add(j).write(u8::from(b.value(j))) };
            }
        }
        other => return Err(format!("{FUNCTION}: column type {other} is not supported").into()),
    }
    set_nulls(column, &mut out);
    Ok(())
}

/// A list of strings per row (`tunnel_parents`): rare and short, so the strings are copied.
fn write_string_lists(lists: &ListArray, output: &mut DataChunkHandle, i: usize) -> Result<(), BoxError> {
    let mut out = output.list_vector(i);
    let offsets = lists.value_offsets();
    let first = offsets[0] as usize;
    let total = offsets[lists.len()] as usize - first;
    let values = lists.values().as_string::<i32>();
    let child = out.child(total);
    for k in 0..total {
        child.insert(k, values.value(first + k));
    }
    if values.null_count() > 0 {
        let mut child = child;
        for k in 0..total {
            if values.is_null(first + k) {
                child.set_null(k);
            }
        }
    }
    for row in 0..lists.len() {
        if lists.is_null(row) {
            out.set_null(row);
        } else {
            let start = offsets[row] as usize - first;
            out.set_entry(row, start, offsets[row + 1] as usize - offsets[row] as usize);
        }
    }
    out.set_len(total);
    Ok(())
}
