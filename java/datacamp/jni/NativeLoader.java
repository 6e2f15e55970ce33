package datacamp.jni;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Loads the Datacamp native library once per JVM (class loader), the way sqlite-jdbc and
 * rocksdbjni do. Places, in order:
 *
 * <ol>
 *   <li>If the system property {@value #PATH_PROPERTY} is set: that file, with
 *       {@link System#load}. An explicit path is authoritative: if it cannot be loaded,
 *       loading fails (the other places are not tried, so a different build is never
 *       picked up silently).</li>
 *   <li>The class-path resource {@code /native/<os>-<arch>/<libname>} (os: {@code linux},
 *       {@code macos}, {@code windows}; arch: {@code x86_64}, {@code aarch64}; libname:
 *       {@code System.mapLibraryName("datacamp")}, e.g. {@code libdatacamp.so}), copied to a
 *       fresh temp file named with the library version and a unique id in
 *       {@value #TMPDIR_PROPERTY} (default {@code java.io.tmpdir}), then
 *       {@link System#load}ed. On Linux and macOS the file is deleted as soon as it is
 *       loaded (the mapping stays valid), so nothing is left behind even by a JVM that is
 *       killed; on Windows, where a loaded library cannot be deleted, it is marked
 *       {@link File#deleteOnExit()}. Before extracting, copies that earlier JVMs left in
 *       that directory (killed mid-extraction, or older versions of this loader) and that
 *       are older than a minute are deleted, as sqlite-jdbc does; one still in use by a
 *       running JVM on Windows cannot be deleted and stays.</li>
 *   <li>{@code System.loadLibrary("datacamp")}, i.e. {@code java.library.path}.</li>
 * </ol>
 *
 * <p>If nothing loads, {@link #load()} throws an {@link UnsatisfiedLinkError} whose message
 * lists every place tried and why each failed. A failed attempt is not remembered: a later
 * call tries again (e.g. after the property was set). Thread-safe.
 *
 * <p>The version used in the temp file name is read from the resource
 * {@code /native/version.txt} if present, else from the jar manifest's
 * {@code Implementation-Version}, else {@code "unknown"}.
 */
public final class NativeLoader {
    /** System property naming the native library file to load instead of the bundled one. */
    public static final String PATH_PROPERTY = "datacamp.native.path";
    /** System property naming the directory for the extracted library (default java.io.tmpdir). */
    public static final String TMPDIR_PROPERTY = "datacamp.native.tmpdir";
    /** The library's base name, as given to {@link System#mapLibraryName(String)}. */
    public static final String LIBRARY_NAME = "datacamp";

    /** Extracted copies older than this are stale (no loader takes that long to load one). */
    static final long STALE_AGE_MILLIS = 60_000L;

    private static volatile String loadedFrom;

    private NativeLoader() {}

    /**
     * Load the native library unless it is already loaded (a no-op after the first success).
     *
     * @throws UnsatisfiedLinkError listing every place tried and why each failed
     */
    public static void load() {
        if (loadedFrom != null) {
            return;
        }
        synchronized (NativeLoader.class) {
            if (loadedFrom != null) {
                return;
            }
            loadedFrom = loadWith(System.getProperty(PATH_PROPERTY), resourcePath(),
                                  System.getProperty(TMPDIR_PROPERTY), LIBRARY_NAME);
        }
    }

    /**
     * Return whether the library has been loaded by this class.
     *
     * @return true after a successful {@link #load()}
     */
    public static boolean isLoaded() {
        return loadedFrom != null;
    }

    /**
     * Return where the library was loaded from (a file path, the extracted temp file and its
     * resource, or {@code java.library.path}), or null if not loaded yet.
     *
     * @return a description of the source, or null
     */
    public static String loadedFrom() {
        return loadedFrom;
    }

    /**
     * Return this platform's operating system name as used in resource paths: {@code linux},
     * {@code macos}, {@code windows}, or else the lower-cased {@code os.name} without spaces.
     *
     * @return the OS part of the platform directory
     */
    public static String os() {
        String name = System.getProperty("os.name", "unknown").toLowerCase(Locale.ROOT);
        if (name.startsWith("linux")) return "linux";
        if (name.startsWith("mac") || name.startsWith("darwin")) return "macos";
        if (name.startsWith("windows")) return "windows";
        return name.replaceAll("[^a-z0-9]", "");
    }

    /**
     * Return this platform's CPU architecture as used in resource paths: {@code x86_64},
     * {@code aarch64}, or else the lower-cased {@code os.arch}.
     *
     * @return the architecture part of the platform directory
     */
    public static String arch() {
        String arch = System.getProperty("os.arch", "unknown").toLowerCase(Locale.ROOT);
        switch (arch) {
            case "amd64":
            case "x86_64":
            case "x86-64":
                return "x86_64";
            case "aarch64":
            case "arm64":
                return "aarch64";
            default:
                return arch.replaceAll("[^a-z0-9_]", "");
        }
    }

    /**
     * Return the class-path resource holding this platform's library, e.g.
     * {@code /native/linux-x86_64/libdatacamp.so}.
     *
     * @return the absolute resource path
     */
    public static String resourcePath() {
        return "/native/" + os() + "-" + arch() + "/" + System.mapLibraryName(LIBRARY_NAME);
    }

    /**
     * Try the three places with the given parameters; return a description of where the
     * library was loaded from, or throw listing every failure. Package-private for tests.
     *
     * @param explicitPath the value of {@value #PATH_PROPERTY}, or null
     * @param resource     the class-path resource to extract, or null to skip
     * @param tmpDir       the extraction directory, or null for java.io.tmpdir
     * @param libName      the base name for {@link System#loadLibrary(String)}
     * @return where the library came from
     * @throws UnsatisfiedLinkError if no place worked
     */
    static String loadWith(String explicitPath, String resource, String tmpDir, String libName) {
        List<String> failures = new ArrayList<>();

        // 1. Explicit path: authoritative.
        if (explicitPath != null) {
            String where = PATH_PROPERTY + "=" + explicitPath;
            Path p = Paths.get(explicitPath).toAbsolutePath();
            if (!Files.isRegularFile(p)) {
                failures.add(where + ": " + (Files.exists(p) ? "not a regular file" : "file does not exist"));
            } else {
                try {
                    System.load(p.toString());
                    return p.toString();
                } catch (UnsatisfiedLinkError | SecurityException e) {
                    failures.add(where + ": " + e);
                }
            }
            throw failure(failures, "fix or unset the system property " + PATH_PROPERTY
                                    + " (when it is set, no other place is tried)");
        }

        // 2. Bundled resource, extracted to a temp file.
        if (resource != null) {
            String where = "class-path resource " + resource;
            try (InputStream in = NativeLoader.class.getResourceAsStream(resource)) {
                if (in == null) {
                    failures.add(where + ": not found (no bundled library for " + os() + "-" + arch() + ")");
                } else {
                    Path dir = tmpDir != null ? Paths.get(tmpDir)
                                              : Paths.get(System.getProperty("java.io.tmpdir"));
                    Path tmp = null;
                    try {
                        String fileName = resource.substring(resource.lastIndexOf('/') + 1);
                        int dot = fileName.lastIndexOf('.');
                        String stem = dot > 0 ? fileName.substring(0, dot) : fileName;
                        String ext = dot > 0 ? fileName.substring(dot) : "";
                        deleteStale(dir, stem + "-", ext);
                        tmp = Files.createTempFile(dir, stem + "-" + version() + "-", ext);
                        if (windows()) {
                            tmp.toFile().deleteOnExit();
                        }
                        // Write into the file createTempFile made (owner-only permissions); never
                        // delete-and-recreate, which would race in a shared directory.
                        try (OutputStream out = Files.newOutputStream(tmp)) {
                            in.transferTo(out);
                        }
                        System.load(tmp.toAbsolutePath().toString());
                        String from = tmp.toAbsolutePath() + " (extracted from " + resource + ")";
                        if (!windows()) {
                            // Loaded: the mapping outlives the file, so none is left behind.
                            deleteQuietly(tmp);
                            from += ", deleted once loaded";
                        }
                        return from;
                    } catch (IOException e) {
                        failures.add(where + ": cannot extract to " + dir + ": " + e
                                     + " (set " + TMPDIR_PROPERTY + " to a writable directory)");
                        deleteQuietly(tmp);
                    } catch (UnsatisfiedLinkError | SecurityException e) {
                        failures.add(where + ": extracted to " + tmp + " but loading failed: " + e
                                     + " (if " + dir + " is mounted noexec, set " + TMPDIR_PROPERTY + ")");
                        deleteQuietly(tmp);
                    }
                }
            } catch (IOException e) {
                failures.add(where + ": cannot read: " + e);
            }
        }

        // 3. java.library.path.
        try {
            System.loadLibrary(libName);
            return "java.library.path (" + System.mapLibraryName(libName) + ")";
        } catch (UnsatisfiedLinkError | SecurityException e) {
            failures.add("System.loadLibrary(\"" + libName + "\") with java.library.path="
                         + System.getProperty("java.library.path") + ": " + e.getMessage());
        }
        throw failure(failures, "set " + PATH_PROPERTY + " to the library file, or use a jar that bundles "
                                + resourcePath());
    }

    private static UnsatisfiedLinkError failure(List<String> failures, String hint) {
        StringBuilder sb = new StringBuilder("cannot load the Datacamp native library ")
            .append(System.mapLibraryName(LIBRARY_NAME)).append(" for ").append(os()).append('-')
            .append(arch()).append("; tried:");
        int i = 1;
        for (String f : failures) {
            sb.append("\n  ").append(i++).append(". ").append(f);
        }
        sb.append("\nhint: ").append(hint);
        return new UnsatisfiedLinkError(sb.toString());
    }

    private static boolean windows() {
        return "windows".equals(os());
    }

    /**
     * Delete the files in {@code dir} named {@code prefix…suffix} (extracted copies of the
     * library) that are older than {@link #STALE_AGE_MILLIS}; failures (a copy still loaded
     * on Windows, a file of another user) are ignored. Package-private for tests.
     *
     * @param dir    the extraction directory
     * @param prefix the file name prefix, e.g. {@code "libdatacamp-"}
     * @param suffix the file name suffix, e.g. {@code ".so"}
     * @return how many files were deleted
     */
    static int deleteStale(Path dir, String prefix, String suffix) {
        int deleted = 0;
        long cutoff = System.currentTimeMillis() - STALE_AGE_MILLIS;
        try (var files = Files.newDirectoryStream(dir, f -> {
                String n = f.getFileName().toString();
                return n.startsWith(prefix) && n.endsWith(suffix) && n.length() > prefix.length() + suffix.length();
            })) {
            for (Path f : files) {
                try {
                    if (Files.isRegularFile(f) && Files.getLastModifiedTime(f).toMillis() < cutoff
                        && Files.deleteIfExists(f)) {
                        deleted++;
                    }
                } catch (IOException | SecurityException ignored) {
                    // in use (Windows) or not ours: leave it
                }
            }
        } catch (IOException | SecurityException ignored) {
            // an unreadable directory: extraction reports its own error
        }
        return deleted;
    }

    private static void deleteQuietly(Path p) {
        if (p != null) {
            try {
                Files.deleteIfExists(p);
            } catch (IOException | SecurityException ignored) {
                // best effort; deleteOnExit is registered too
            }
        }
    }

    /**
     * Return the native library version used in extracted file names: the first line of
     * resource {@code /native/version.txt}, else the manifest's Implementation-Version,
     * else {@code "unknown"}. Only characters {@code [A-Za-z0-9._-]} are kept.
     *
     * @return the version string (never empty)
     */
    public static String version() {
        String v = null;
        try (InputStream in = NativeLoader.class.getResourceAsStream("/native/version.txt")) {
            if (in != null) {
                v = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8)).readLine();
            }
        } catch (IOException ignored) {
            // fall through
        }
        if (v == null || v.isBlank()) {
            Package pkg = NativeLoader.class.getPackage();
            v = pkg == null ? null : pkg.getImplementationVersion();
        }
        if (v == null) {
            v = "unknown";
        }
        v = v.trim().replaceAll("[^A-Za-z0-9._-]", "_");
        return v.isEmpty() ? "unknown" : v;
    }
}
