/* png.h - demo excerpt for rezfs examples */
#ifndef PNG_H
#define PNG_H
#define PNG_LIBPNG_VER_STRING "1.6.40"
#define PNG_LIBPNG_VER 10640
PNG_EXPORT(1, void, png_demo_00, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(2, void, png_demo_01, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(3, void, png_demo_02, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(4, void, png_demo_03, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(5, void, png_demo_04, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(6, void, png_demo_05, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(7, void, png_demo_06, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(8, void, png_demo_07, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(9, void, png_demo_08, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(10, void, png_demo_09, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(11, void, png_demo_10, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(12, void, png_demo_11, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(13, void, png_demo_12, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(14, void, png_demo_13, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(15, void, png_demo_14, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(16, void, png_demo_15, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(17, void, png_demo_16, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(18, void, png_demo_17, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(19, void, png_demo_18, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(20, void, png_demo_19, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(21, void, png_demo_20, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(22, void, png_demo_21, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(23, void, png_demo_22, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(24, void, png_demo_23, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(25, void, png_demo_24, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(26, void, png_demo_25, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(27, void, png_demo_26, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(28, void, png_demo_27, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(29, void, png_demo_28, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(30, void, png_demo_29, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(31, void, png_demo_30, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(32, void, png_demo_31, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(33, void, png_demo_32, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(34, void, png_demo_33, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(35, void, png_demo_34, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(36, void, png_demo_35, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(37, void, png_demo_36, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(38, void, png_demo_37, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(39, void, png_demo_38, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(40, void, png_demo_39, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(41, void, png_demo_40, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(42, void, png_demo_41, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(43, void, png_demo_42, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(44, void, png_demo_43, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(45, void, png_demo_44, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(46, void, png_demo_45, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(47, void, png_demo_46, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(48, void, png_demo_47, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(49, void, png_demo_48, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(50, void, png_demo_49, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(51, void, png_demo_50, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(52, void, png_demo_51, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(53, void, png_demo_52, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(54, void, png_demo_53, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(55, void, png_demo_54, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(56, void, png_demo_55, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(57, void, png_demo_56, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(58, void, png_demo_57, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(59, void, png_demo_58, (png_structrp png_ptr, png_uint_32 flags));
PNG_EXPORT(60, void, png_demo_59, (png_structrp png_ptr, png_uint_32 flags));
#endif /* PNG_H */
