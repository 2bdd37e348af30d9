/// One metadata value. GGUF arrays are homogeneous, but each element of an array of arrays carries its own
/// element type, so nested arrays may differ in type from one another.
public indirect enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32),
         float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double),
         array([GGUFValue])

    /// The GGUF name of the value's type ("uint32", "string", "array of string", ...), for messages.
    public var typeName: String {
        switch self {
        case .uint8: "uint8"
        case .int8: "int8"
        case .uint16: "uint16"
        case .int16: "int16"
        case .uint32: "uint32"
        case .int32: "int32"
        case .float32: "float32"
        case .bool: "bool"
        case .string: "string"
        case .uint64: "uint64"
        case .int64: "int64"
        case .float64: "float64"
        case .array(let elements): elements.first.map { "array of \($0.typeName)" } ?? "empty array"
        }
    }

    /// The value as an `Int` if it is an integer of any width that fits; nil otherwise.
    public var integerValue: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(v)
        default: nil
        }
    }

    /// The value as a `Float` if it is a float or an integer; nil otherwise.
    public var floatValue: Float? {
        switch self {
        case .float32(let v): v
        case .float64(let v): Float(v)
        case .uint8(let v): Float(v)
        case .int8(let v): Float(v)
        case .uint16(let v): Float(v)
        case .int16(let v): Float(v)
        case .uint32(let v): Float(v)
        case .int32(let v): Float(v)
        case .uint64(let v): Float(v)
        case .int64(let v): Float(v)
        default: nil
        }
    }

    /// True for the eight integer types.
    var isInteger: Bool {
        switch self {
        case .uint8, .int8, .uint16, .int16, .uint32, .int32, .uint64, .int64: true
        default: false
        }
    }
}
