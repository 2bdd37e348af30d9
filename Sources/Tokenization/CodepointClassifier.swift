/// Looks up `CodepointFlags` for scalars. The Basic Multilingual Plane is tabulated once per process;
/// scalars above it (emoji, rare scripts) are classified on the fly.
enum CodepointClassifier {
    /// Flags for U+0000...U+FFFF; surrogates are `\p{C}` like in llama.cpp's table.
    static let basicPlane: [UInt16] = {
        var table = [UInt16](repeating: 0, count: 0x10000)
        for value in 0..<UInt32(0x10000) {
            table[Int(value)] = computeFlags(value).rawValue
        }
        return table
    }()

    static func computeFlags(_ value: UInt32) -> CodepointFlags {
        guard let scalar = Unicode.Scalar(value) else {
            // Surrogate code points: category Cs, i.e. \p{C}.
            return value < 0x110000 ? .control : []
        }
        var flags: CodepointFlags
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            flags = .letter
        case .nonspacingMark, .spacingMark, .enclosingMark:
            flags = .accentMark
        case .decimalNumber, .letterNumber, .otherNumber:
            flags = .number
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            flags = .punctuation
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
            flags = .symbol
        case .spaceSeparator, .lineSeparator, .paragraphSeparator:
            flags = .separator
        case .control, .format, .surrogate, .privateUse, .unassigned:
            flags = .control
        @unknown default:
            flags = .control
        }
        if scalar.properties.isWhitespace { flags.insert(.whitespace) }
        return flags
    }
}
